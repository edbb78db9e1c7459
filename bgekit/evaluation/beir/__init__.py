"""BEIR evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.beir ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.beir``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import BEIREvalArgs, BEIREvalModelArgs
from bgekit.evaluation.runner import BEIREvalRunner

__all__ = ["BEIREvalArgs", "BEIREvalModelArgs", "BEIREvalRunner"]
