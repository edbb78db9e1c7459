"""MLDR evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.mldr ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.mldr``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import MLDREvalArgs, MLDREvalModelArgs
from bgekit.evaluation.runner import MLDREvalRunner

__all__ = ["MLDREvalArgs", "MLDREvalModelArgs", "MLDREvalRunner"]
