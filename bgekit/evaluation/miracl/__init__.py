"""MIRACL evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.miracl ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.miracl``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import MIRACLEvalArgs, MIRACLEvalModelArgs
from bgekit.evaluation.runner import MIRACLEvalRunner

__all__ = ["MIRACLEvalArgs", "MIRACLEvalModelArgs", "MIRACLEvalRunner"]
