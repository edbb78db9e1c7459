"""MKQA evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.mkqa ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.mkqa``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import MKQAEvalArgs, MKQAEvalModelArgs
from bgekit.evaluation.runner import MKQAEvalRunner

__all__ = ["MKQAEvalArgs", "MKQAEvalModelArgs", "MKQAEvalRunner"]
