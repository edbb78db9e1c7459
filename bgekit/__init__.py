"""bgekit: search and RAG retrieval in the BGE tradition.

Public names load lazily (PEP 562), so ``import bgekit`` imports neither torch nor transformers.

Example:
    >>> from bgekit import FlagAutoModel
    >>> model = FlagAutoModel.from_finetuned("all-MiniLM-L6-v2")
    >>> model.encode(["I love NLP"]).shape
    (1, 384)
"""
from __future__ import annotations

from bgekit._lazy import lazy_names
from bgekit.compat import _LAZY as _FLAG_EMBEDDING_NAMES  # light: a table of names, no model code

__version__ = "0.1.0"

_LAZY = {
    # native API
    "Embedder": "bgekit.encoder",
    "load_embedder": "bgekit.loading",
    "M3Embedder": "bgekit.m3",
    "VisualEmbedder": "bgekit.visual.embedder",
    "ModelSpec": "bgekit.registry",
    # rerankers
    "Reranker": "bgekit.reranker",
    "EarlyExitReranker": "bgekit.reranker_layerwise",
    # evaluation and retrieval
    "evaluate_beir": "bgekit.eval.runner",
    "evaluate_retrieval": "bgekit.eval.runner",
    "EvalConfig": "bgekit.eval.runner",
    "load_folder": "bgekit.eval.data",
    "load_benchmark": "bgekit.eval.hub",
    "evaluate_run": "bgekit.eval.metrics",
    "DenseIndex": "bgekit.index.dense",
    "SparseIndex": "bgekit.index.sparse",
    "MTEBModel": "bgekit.eval.mteb",
    # persisted hybrid index, search and the HTTP server
    "build_index": "bgekit.index.store",
    "open_index": "bgekit.index.store",
    "IndexStore": "bgekit.index.store",
    "Searcher": "bgekit.index.search",
    "SearchHit": "bgekit.index.search",
    "SearchResult": "bgekit.index.search",
    "create_app": "bgekit.serve.app",
    "ServeConfig": "bgekit.serve.engine",
    # FlagEmbedding-compatible entry points: one table, in bgekit.compat
    **_FLAG_EMBEDDING_NAMES,
}

__getattr__, __dir__, __all__ = lazy_names("bgekit", _LAZY, globals())
__all__ = __all__ + ["__version__"]
