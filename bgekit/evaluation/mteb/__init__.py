"""MTEB evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.mteb ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.mteb``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import MTEBEvalArgs, MTEBEvalModelArgs
from bgekit.evaluation.mteb_runner import MTEBEvalRunner

__all__ = ["MTEBEvalArgs", "MTEBEvalModelArgs", "MTEBEvalRunner"]
