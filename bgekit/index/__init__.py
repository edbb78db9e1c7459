"""Retrieval building blocks shared by evaluation and (later) the persisted hybrid index.

- :class:`~bgekit.index.dense.DenseIndex`: FAISS, exact inner product by default, or any FAISS factory string
  (HNSW, IVF...) for approximate search.
- :class:`~bgekit.index.sparse.SparseIndex`: an inverted index over sparse lexical weights (BGE-M3), CSR on scipy.
- :mod:`bgekit.index.fusion`: weighted-sum and reciprocal-rank fusion of ranked lists.

Every search returns ``(scores, indices)`` arrays of shape (Q, k), best first, padded with ``-1`` indices
(and ``-inf`` scores) where fewer than k items matched. Heavy imports (faiss, scipy) happen on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DenseIndex": "bgekit.index.dense",
    "SparseIndex": "bgekit.index.sparse",
    "weighted_sum": "bgekit.index.fusion",
    "rrf": "bgekit.index.fusion",
    "fuse": "bgekit.index.fusion",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bgekit.index' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
