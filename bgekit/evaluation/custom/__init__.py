"""local-folder evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.custom ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.custom``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import CustomEvalArgs, CustomEvalModelArgs
from bgekit.evaluation.runner import CustomEvalRunner

__all__ = ["CustomEvalArgs", "CustomEvalModelArgs", "CustomEvalRunner"]
