"""Retrieval building blocks shared by evaluation and (later) the persisted hybrid index.

- :class:`~bgekit.index.dense.DenseIndex`: FAISS, exact inner product by default, or any FAISS factory string
  (HNSW, IVF...) for approximate search.
- :class:`~bgekit.index.sparse.SparseIndex`: an inverted index over sparse lexical weights (BGE-M3), CSR on scipy.
- :mod:`bgekit.index.fusion`: weighted-sum and reciprocal-rank fusion of ranked lists.

Every search returns ``(scores, indices)`` arrays of shape (Q, k), best first, padded with ``-1`` indices
(and ``-inf`` scores) where fewer than k items matched. Heavy imports (faiss, scipy) happen on first use.
"""
from __future__ import annotations

from bgekit._lazy import lazy_names


_LAZY = {
    "DenseIndex": "bgekit.index.dense",
    "SparseIndex": "bgekit.index.sparse",
    "weighted_sum": "bgekit.index.fusion",
    "rrf": "bgekit.index.fusion",
    "fuse": "bgekit.index.fusion",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.index", _LAZY, globals())
