"""BRIGHT evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.bright ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.bright``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import BrightEvalArgs, BrightEvalModelArgs
from bgekit.evaluation.runner import BrightEvalRunner

__all__ = ["BrightEvalArgs", "BrightEvalModelArgs", "BrightEvalRunner"]
