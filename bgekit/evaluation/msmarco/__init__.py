"""MS MARCO evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.msmarco ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.msmarco``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import MSMARCOEvalArgs, MSMARCOEvalModelArgs
from bgekit.evaluation.runner import MSMARCOEvalRunner

__all__ = ["MSMARCOEvalArgs", "MSMARCOEvalModelArgs", "MSMARCOEvalRunner"]
