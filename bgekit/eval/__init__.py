"""Evaluation: load benchmarks, retrieve (dense / sparse / hybrid / BM25, optional reranking), score, report.

Public names load lazily, so importing this package loads neither torch, faiss nor pytrec_eval.

Example:
    >>> from bgekit.eval import load_folder, evaluate_retrieval, EvalConfig
    >>> data = load_folder("../shared/data/scifact", split="test")
    >>> result = evaluate_retrieval(data, config=EvalConfig(retrieval="bm25"))
    >>> round(result.metrics["ndcg@10"], 3)
    0.676
"""
from __future__ import annotations

from bgekit._lazy import lazy_names


_LAZY = {
    "RetrievalData": "bgekit.eval.data",
    "load_folder": "bgekit.eval.data",
    "load_benchmark": "bgekit.eval.hub",
    "FAMILIES": "bgekit.eval.hub",
    "evaluate_run": "bgekit.eval.metrics",
    "sts_spearman": "bgekit.eval.metrics",
    "reranking_scores": "bgekit.eval.metrics",
    "qa_recall": "bgekit.eval.metrics",
    "EvalConfig": "bgekit.eval.runner",
    "SplitResult": "bgekit.eval.runner",
    "evaluate_retrieval": "bgekit.eval.runner",
    "evaluate_beir": "bgekit.eval.runner",
    "EmbeddingCache": "bgekit.eval.cache",
    "model_fingerprint": "bgekit.eval.cache",
    "markdown_table": "bgekit.eval.report",
    "plot_curves": "bgekit.eval.report",
    "MTEBModel": "bgekit.eval.mteb",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.eval", _LAZY, globals())
