"""An inverted index over sparse lexical weights (BGE-M3 ``lexical_weights``), stored as CSR on scipy.

The score of a document is the sum, over tokens it shares with the query, of the product of the two weights:
BGE-M3's lexical matching score.

Example:
    >>> index = SparseIndex.from_vectors([{"1": 0.5, "7": 0.2}, {"3": 0.9}])
    >>> scores, ids = index.search([{"7": 1.0, "3": 0.1}], k=2)
    >>> ids.tolist(), [round(s, 2) for s in scores[0].tolist()]
    ([[0, 1]], [0.2, 0.09])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bgekit.index.dense import check_k
from bgekit.types import SparseVector


QUERY_BLOCK = 16  # queries scored against the postings at a time: a common token can match every document


def _scipy_sparse():
    try:
        import scipy.sparse as sp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("sparse search needs scipy: pip install 'bgekit[eval]'") from e
    return sp


def _as_sparse_vector(item: Any, name: str, i: int) -> SparseVector:
    if isinstance(item, SparseVector):
        return item
    if isinstance(item, dict):
        try:
            return SparseVector.from_dict(item)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}] must map integer token ids (or their strings) to numbers") from None
    raise TypeError(f"{name}[{i}] must be a SparseVector or a dict token_id -> weight, got {type(item).__name__}")


def to_csr(items: Sequence[Any], name: str, n_cols: int | None = None):
    """Sparse vectors (SparseVector or ``{str(token_id): weight}``) -> scipy CSR (N, n_cols), float32.

    Token ids >= n_cols are dropped (no indexed document can contain them).
    """
    sp = _scipy_sparse()
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list of SparseVector or dicts, got {type(items).__name__}")
    vecs = [_as_sparse_vector(x, name, i) for i, x in enumerate(items)]
    for i, v in enumerate(vecs):
        if len(v) and (v.indices.min() < 0 or not np.isfinite(v.values).all()):
            raise ValueError(f"{name}[{i}] holds a negative token id or a non-finite weight")
    width = max((int(v.indices.max()) + 1 for v in vecs if len(v)), default=1)
    n_cols = width if n_cols is None else n_cols
    keep = [v.indices < n_cols for v in vecs]
    indptr = np.zeros(len(vecs) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([int(m.sum()) for m in keep])
    indices = np.concatenate([v.indices[m] for v, m in zip(vecs, keep)]) if vecs else np.zeros(0, np.int64)
    values = np.concatenate([v.values[m] for v, m in zip(vecs, keep)]) if vecs else np.zeros(0, np.float32)
    return sp.csr_matrix((values.astype(np.float32), indices, indptr), shape=(len(vecs), n_cols))


class SparseIndex:
    """Documents as rows of a CSR matrix (N, vocabulary); searches through its transpose (an inverted index).

    Build it with :meth:`from_vectors`. Documents that share no token with a query never match it, so a
    search may return fewer than k hits: the rest is padded with index -1 and score -inf.
    """

    def __init__(self, matrix, inverted=None):
        sp = _scipy_sparse()
        if not sp.issparse(matrix) or matrix.ndim != 2:
            raise TypeError("SparseIndex needs a 2-D scipy sparse matrix (documents x vocabulary)")
        self.matrix = matrix.tocsr().astype(np.float32, copy=False)  # (N, V); memory-mapped arrays stay mapped
        if inverted is not None and inverted.shape != self.matrix.shape[::-1]:
            raise ValueError(f"inverted index of shape {inverted.shape} for a matrix of shape {self.matrix.shape}")
        self.inverted = self.matrix.T.tocsr() if inverted is None else inverted  # (V, N): postings per token

    @classmethod
    def from_vectors(cls, vectors: Sequence[Any]) -> "SparseIndex":
        """Index sparse vectors: SparseVector objects or FlagEmbedding's ``{str(token_id): weight}`` dicts."""
        return cls(to_csr(vectors, "vectors"))

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.matrix.shape[1])

    def search(self, queries: Sequence[Any], k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents per query, best first (ties: lower document index first).

        Args:
            queries: SparseVector objects or ``{str(token_id): weight}`` dicts.
            k: how many per query; at most ``len(self)``.
            exclude: document indices never returned (an index segment's deleted rows).

        Returns:
            ``(scores, indices)``, both (Q, k); padded with -inf / -1 past the last matching document.
        """
        k = check_k(k, len(self))
        q = to_csr(queries, "queries", self.vocab_size)        # (Q, V)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        product = None
        for row in range(q.shape[0]):
            if row % QUERY_BLOCK == 0:  # (block, N), only overlapping documents stored: up to block x N entries
                product = (q[row:row + QUERY_BLOCK] @ self.inverted).tocsr()
            start, end = product.indptr[row % QUERY_BLOCK], product.indptr[row % QUERY_BLOCK + 1]
            docs, vals = product.indices[start:end], product.data[start:end]
            if exclude is not None and len(exclude):
                keep = ~np.isin(docs, exclude)
                docs, vals = docs[keep], vals[keep]
            if len(vals) > k:  # keep everything at or above the k-th score, ties included, then cut in order
                keep = vals >= -np.partition(-vals, k - 1)[k - 1]
                docs, vals = docs[keep], vals[keep]
            order = np.lexsort((docs, -vals))[:k]
            scores[row, :len(order)] = vals[order]
            ids[row, :len(order)] = docs[order]
        return scores, ids

    def score(self, queries: Sequence[Any], doc_indices: np.ndarray) -> np.ndarray:
        """Exact scores of chosen documents: ``doc_indices`` (Q, m) -> (Q, m); index -1 gives -inf."""
        q = to_csr(queries, "queries", self.vocab_size)
        idx = np.asarray(doc_indices, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != q.shape[0]:
            raise ValueError(f"doc_indices must be (Q, m) with Q={q.shape[0]}, got shape {idx.shape}")
        if idx.size and idx.max() >= len(self):
            raise ValueError(f"doc index {int(idx.max())} is out of range for an index of {len(self)} documents")
        out = np.empty(idx.shape, dtype=np.float32)
        for row in range(idx.shape[0]):
            rows = self.matrix[np.maximum(idx[row], 0)]        # (m, V)
            out[row] = np.asarray((rows @ q[row].T).todense()).ravel()
        return np.where(idx < 0, -np.inf, out).astype(np.float32)

    def __repr__(self) -> str:
        return f"SparseIndex(size={len(self)}, vocab_size={self.vocab_size}, nnz={self.matrix.nnz})"
