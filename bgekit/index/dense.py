"""Dense vector search with FAISS: exact inner product by default, any FAISS factory string for approximate search.

Example:
    >>> import numpy as np
    >>> index = DenseIndex.from_vectors(np.eye(3, dtype=np.float32))
    >>> scores, ids = index.search(np.array([[0.1, 0.9, 0.0]], dtype=np.float32), k=2)
    >>> ids.tolist(), [round(s, 2) for s in scores[0].tolist()]
    ([[1, 0]], [0.9, 0.1])
"""
from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("ip", "l2")


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("dense search needs FAISS: pip install 'bgekit[eval]' (faiss-cpu)") from e
    return faiss


def as_matrix(vectors: Any, name: str, dim: int | None = None) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (N, D) array; clear errors for wrong shapes and non-finite values."""
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, dim), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[1]}, the index holds dimension {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name}[{bad}] holds NaN or infinite values")
    return arr


def check_k(k: Any, size: int, what: str = "index") -> int:
    """Validate a top-k against the number of searchable items (no silent -1 padding from FAISS)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if size == 0:
        raise ValueError(f"the {what} is empty: add documents before searching")
    if k > size:
        raise ValueError(f"k={k} is larger than the {what} ({size} documents); ask for at most {size}")
    return int(k)


class DenseIndex:
    """A FAISS index over dense vectors; higher scores are better.

    Args:
        dim: vector dimension.
        factory: a FAISS index factory string. "Flat" (default) is exact; "HNSW32", "IVF256,Flat",
            "IVF256,PQ32"... are approximate. Indexes that need training are trained on the first ``add``.
        metric: "ip" (inner product: cosine for normalised vectors) or "l2" (scores are negative squared distances).
        search_params: FAISS search parameters such as ``{"efSearch": 128}`` (HNSW) or ``{"nprobe": 16}`` (IVF).

    Example:
        >>> idx = DenseIndex(4, factory="HNSW16")
    """

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "ip", search_params: dict | None = None):
        faiss = _faiss()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        metrics = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
        if metric not in metrics:
            raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(metrics)}")
        try:
            self.index = faiss.index_factory(dim, factory, metrics[metric])
        except RuntimeError as e:
            raise ValueError(f"FAISS cannot build index {factory!r}: {str(e).strip().splitlines()[-1]}") from None
        self.dim, self.factory, self.metric = dim, factory, metric
        self.exact = factory.strip().lower() == "flat"
        self._vectors: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        for name, value in (search_params or {}).items():
            self._set_param(name, value)

    @classmethod
    def from_vectors(cls, vectors: Any, factory: str = "Flat", metric: str = "ip",
                     search_params: dict | None = None) -> "DenseIndex":
        """Build an index holding ``vectors`` (N, D); document i gets index i."""
        arr = as_matrix(vectors, "vectors")
        index = cls(arr.shape[1], factory=factory, metric=metric, search_params=search_params)
        index.add(arr)
        return index

    @classmethod
    def over(cls, vectors: np.ndarray, metric: str = "ip") -> "DenseIndex":
        """Exact search over an (N, D) float32 array kept where it is, e.g. a memory map of vectors on disk: no
        copy into FAISS (``faiss.knn`` reads it a block at a time); equal scores rank the lower row first.
        The array is trusted (checked when it was written); nothing can be added."""
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.dtype != np.float32 \
                or not vectors.flags.c_contiguous:
            raise TypeError("DenseIndex.over needs a C-contiguous (N, D) float32 array")
        index = cls(int(vectors.shape[1]), factory="Flat", metric=metric)
        index.index, index._matrix, index._vectors = None, vectors, [vectors]
        return index

    def __len__(self) -> int:
        return int(self.index.ntotal) if self.index is not None else len(self._matrix)

    def add(self, vectors: Any) -> None:
        """Append vectors (N, D); they get the next indices in order."""
        arr = as_matrix(vectors, "vectors", self.dim)
        if self.index is None:
            raise TypeError("an index over an array in place (DenseIndex.over) cannot grow")
        if not len(arr):
            return
        if not self.index.is_trained:
            try:
                self.index.train(arr)
            except RuntimeError as e:
                raise ValueError(f"FAISS could not train {self.factory!r} on {len(arr)} vectors "
                                 f"({str(e).strip().splitlines()[-1]}); use more vectors or a smaller index") from None
        self.index.add(arr)
        self._vectors.append(arr)
        self._matrix = None

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents per query.

        Args:
            queries: (Q, D) or (D,) query vectors.
            k: how many per query; at most ``len(self)``.

        Returns:
            ``(scores, indices)``, both (Q, k), best first. Approximate indexes may pad with index -1 and score -inf.
        """
        q = as_matrix(queries, "queries", self.dim)
        k = check_k(k, len(self))
        if self.index is None:  # over(): exact search of the array in place
            faiss = _faiss()
            metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
            dist, ids = faiss.knn(q, self._matrix, k, metric=metric)
            scores, ids = rank_ties((-dist if self.metric == "l2" else dist).astype(np.float32), ids)
        else:
            scores, ids = self.index.search(q, k)  # (Q, k), (Q, k)
            scores = -scores if self.metric == "l2" else scores.astype(np.float32, copy=False)
        scores[ids < 0] = -np.inf
        return scores, ids.astype(np.int64, copy=False)

    def score(self, queries: Any, doc_indices: np.ndarray) -> np.ndarray:
        """Exact scores of chosen documents: ``doc_indices`` (Q, m) -> scores (Q, m); index -1 gives -inf."""
        q = as_matrix(queries, "queries", self.dim)
        idx = np.asarray(doc_indices, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != q.shape[0]:
            raise ValueError(f"doc_indices must be (Q, m) with Q={q.shape[0]}, got shape {idx.shape}")
        if idx.size and idx.max() >= len(self):
            raise ValueError(f"doc index {int(idx.max())} is out of range for an index of {len(self)} documents")
        out = np.empty(idx.shape, dtype=np.float32)
        for a in range(0, len(q), 16):  # (16, m, D) gathered at a time, not (Q, m, D)
            docs = self.vectors[np.maximum(idx[a:a + 16], 0)]
            if self.metric == "ip":
                out[a:a + 16] = np.einsum("qd,qmd->qm", q[a:a + 16], docs)
            else:
                out[a:a + 16] = -((docs - q[a:a + 16, None, :]) ** 2).sum(-1)
        return np.where(idx < 0, -np.inf, out).astype(np.float32)

    @property
    def vectors(self) -> np.ndarray:
        """All vectors added so far, (N, D) float32."""
        if self._matrix is None:
            self._matrix = np.concatenate(self._vectors) if self._vectors else np.zeros((0, self.dim), np.float32)
            self._vectors = [self._matrix]
        return self._matrix

    def _set_param(self, name: str, value: Any) -> None:
        faiss = _faiss()
        try:
            faiss.ParameterSpace().set_index_parameter(self.index, name, value)
        except RuntimeError as e:
            raise ValueError(f"FAISS index {self.factory!r} has no search parameter {name!r} "
                             f"({str(e).strip().splitlines()[-1]})") from None

    def __repr__(self) -> str:
        return f"DenseIndex(dim={self.dim}, factory={self.factory!r}, metric={self.metric!r}, size={len(self)})"


def rank_ties(scores: np.ndarray, ids: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row of search results best first, equal scores lower row first (FAISS leaves their order to its heap),
    padding (id -1) last; the first ``k`` columns (all by default)."""
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids.astype(np.int64), order, 1)
