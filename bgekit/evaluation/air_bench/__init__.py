"""AIR-Bench evaluation at FlagEmbedding's path: ``python -m bgekit.evaluation.air_bench ARGS`` (its argument names).

The names importable here are FlagEmbedding's (``FlagEmbedding.evaluation.air_bench``); see :mod:`bgekit.evaluation`.
"""
from bgekit.evaluation.arguments import AIRBenchEvalArgs, AIRBenchEvalModelArgs
from bgekit.evaluation.air_bench_runner import AIRBenchEvalRunner

__all__ = ["AIRBenchEvalArgs", "AIRBenchEvalModelArgs", "AIRBenchEvalRunner"]
