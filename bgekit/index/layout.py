"""Logical rows over segments and tombstones: one index's documents numbered 0..count-1 in insertion order.

A generation lists segments, each with the sorted local rows it deletes. Live row ``r`` of a segment (the r-th
row not deleted) is local row ``r + #{j: deleted[j] - j <= r}``, so mapping costs O(log deleted) per row and
no O(rows) table is built. :class:`Layout` does the mapping; :class:`DenseView`, :class:`SparseView` and
:class:`RowView` give the store's ``dense``, ``sparse`` and ``dense_vectors`` over all segments: each search
runs per segment (skipping deleted rows) and the per-segment top-k lists are merged, so the result equals that
of the same documents in one segment (``bgekit index compact``).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from bgekit.index.dense import as_matrix, check_k


class Layout:
    """Live rows of ``parts``: a list of (segment, sorted deleted local rows)."""

    def __init__(self, parts: list[tuple[Any, np.ndarray]], dim: int):
        self.parts, self.dim = parts, dim
        live = [seg.rows - len(d) for seg, d in parts]
        self.starts = np.r_[0, np.cumsum(live, dtype=np.int64)].astype(np.int64)
        self.count = int(self.starts[-1])
        self._shift = [d - np.arange(len(d), dtype=np.int64) for _, d in parts]

    def split(self, rows: Any) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For logical ``rows`` (1-D): (part, positions in ``rows``, local rows), part by part."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.count):
            bad = int(rows[(rows < 0) | (rows >= self.count)][0])
            raise IndexError(f"row {bad} is out of range for an index of {self.count} documents")
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for part in np.unique(which):
            pos = np.flatnonzero(which == part)
            r = rows[pos] - self.starts[part]
            yield int(part), pos, r + np.searchsorted(self._shift[part], r, side="right")

    def logical(self, part: int, local: Any) -> np.ndarray:
        """Logical rows of live local rows of one part."""
        local = np.asarray(local, dtype=np.int64)
        return local - np.searchsorted(self.parts[part][1], local) + self.starts[part]

    def live_locals(self, part: int, local: Any) -> np.ndarray:
        """The subset of ``local`` rows of one part that are not deleted (a boolean mask)."""
        deleted = self.parts[part][1]
        return ~np.isin(local, deleted) if len(deleted) else np.ones(len(local), dtype=bool)

    def merge(self, found: list[tuple[int, np.ndarray, np.ndarray]], k: int, n_queries: int):
        """Per-part (part, scores, local rows) -> the best k logical rows per query, ties to the lower row."""
        if not found:
            return np.full((n_queries, k), -np.inf, np.float32), np.full((n_queries, k), -1, np.int64)
        scores = np.concatenate([s for _, s, _ in found], axis=1)
        rows = np.concatenate([np.where(loc >= 0, self.logical(p, np.maximum(loc, 0)), -1) for p, _, loc in found], axis=1)
        order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -scores), axis=-1)[:, :k]
        return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(rows, order, 1)


class RowView:
    """The dense vectors of all live rows as one read-only (N, D) array-like: indexing gathers from segments."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.shape, self.dtype, self.ndim = (layout.count, layout.dim), np.dtype(np.float32), 2

    def __len__(self) -> int:
        return self.layout.count

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(self.layout.count)[key])
        key = np.asarray(key)
        if key.dtype == bool:
            return self.take(np.flatnonzero(key))
        return self.take(key.ravel()).reshape(key.shape + (self.layout.dim,))

    def take(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.layout.dim), dtype=np.float32)
        for part, pos, local in self.layout.split(rows):
            out[pos] = self.layout.parts[part][0].dense[np.sort(local)][np.argsort(np.argsort(local))]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.take(np.arange(self.layout.count))
        return out if dtype is None else out.astype(dtype)


class DenseView:
    """Dense search over every segment, skipping deleted rows; the API of :class:`~bgekit.index.dense.DenseIndex`."""

    def __init__(self, layout: Layout, vectors: Any, factory: str, metric: str):
        self.layout, self.vectors, self.factory, self.metric = layout, vectors, factory, metric
        self.dim = layout.dim
        self.exact = factory.strip().lower() == "flat"

    def __len__(self) -> int:
        return self.layout.count

    @property
    def index(self) -> Any:
        """The FAISS index of the only segment (an index of several segments has one per segment: compact it)."""
        parts = self.layout.parts
        if len(parts) != 1 or parts[0][0].index is None:
            raise AttributeError(f"this index has {len(parts)} segment(s) and a {self.factory!r} dense index: there is "
                                 "one FAISS index per approximate segment (bgekit index compact merges them)")
        return parts[0][0].index

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live rows per query: (scores, rows), each (Q, k), best first."""
        q = as_matrix(queries, "queries", self.dim)
        k = check_k(k, len(self))
        found = []
        for part, (seg, deleted) in enumerate(self.layout.parts):
            live = seg.rows - len(deleted)
            if live:
                scores, local = seg.search_dense(q, min(k, live), deleted)
                found.append((part, scores, local))
        return self.layout.merge(found, k, len(q))

    def score(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """Exact scores of chosen rows: ``rows`` (Q, m) -> (Q, m); row -1 gives -inf."""
        q = as_matrix(queries, "queries", self.dim)
        idx = np.asarray(rows, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != q.shape[0]:
            raise ValueError(f"rows must be (Q, m) with Q={q.shape[0]}, got shape {idx.shape}")
        docs = self.vectors[np.maximum(idx, 0)] if len(self) else np.zeros(idx.shape + (self.dim,), np.float32)
        out = np.einsum("qd,qmd->qm", q, docs) if self.metric == "ip" else -((docs - q[:, None, :]) ** 2).sum(-1)
        return np.where(idx < 0, -np.inf, out).astype(np.float32)

    def scores_of(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """Exact scores of every query against the same ``rows`` (A,): (Q, A)."""
        q = as_matrix(queries, "queries", self.dim)
        docs = np.asarray(self.vectors[rows])  # (A, D)
        return q @ docs.T if self.metric == "ip" else -((docs[None] - q[:, None, :]) ** 2).sum(-1)


class SparseView:
    """Sparse search over every segment, skipping deleted rows; the API of :class:`~bgekit.index.sparse.SparseIndex`."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self._matrix = None

    def __len__(self) -> int:
        return self.layout.count

    @property
    def vocab_size(self) -> int:
        return max([seg.sparse.vocab_size for seg, _ in self.layout.parts] or [1])

    @property
    def matrix(self):
        """Live rows as one CSR (N, vocab); built (and kept) on first use when there are several segments."""
        parts = self.layout.parts
        if len(parts) == 1 and not len(parts[0][1]):
            return parts[0][0].sparse.matrix
        if self._matrix is None:
            import scipy.sparse as sp

            width, blocks = self.vocab_size, []
            for seg, deleted in self.layout.parts:
                m = seg.sparse.matrix
                if len(deleted):
                    m = m[np.setdiff1d(np.arange(seg.rows), deleted)]
                blocks.append(sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], width)))
            self._matrix = (sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, width), dtype=np.float32))
        return self._matrix

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live rows per query (documents sharing no token are not hits): (scores, rows), -inf / -1 padded."""
        k = check_k(k, len(self))
        found = []
        for part, (seg, deleted) in enumerate(self.layout.parts):
            live = seg.rows - len(deleted)
            if live:
                scores, local = seg.sparse.search(queries, min(k, live), exclude=deleted)
                found.append((part, scores, local))
        return self.layout.merge(found, k, len(queries))

    def score(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """Exact scores of chosen rows: ``rows`` (Q, m) -> (Q, m); row -1 gives -inf."""
        idx = np.asarray(rows, dtype=np.int64)
        out = np.full(idx.shape, -np.inf, dtype=np.float32)
        for q in range(idx.shape[0]):
            keep = np.flatnonzero(idx[q] >= 0)
            if len(keep):
                out[q, keep] = self.scores_of([queries[q]], idx[q, keep])[0]
        return out

    def scores_of(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """Exact scores of every query against the same ``rows`` (A,): (Q, A); 0 where no token is shared."""
        from bgekit.index.sparse import to_csr

        out = np.zeros((len(queries), len(rows)), dtype=np.float32)
        for part, pos, local in self.layout.split(rows):
            index = self.layout.parts[part][0].sparse
            q = to_csr(queries, "queries", index.vocab_size)
            out[:, pos] = np.asarray((q @ index.matrix[local].T).todense())
        return out


class ColbertView:
    """The ColBERT vectors of all live rows as one (T, C) token array: ``view[offsets[r]:offsets[r + 1]]`` is row r's."""

    def __init__(self, offsets: np.ndarray, row_vectors: Any, dim: int):
        self.offsets, self.row_vectors = offsets, row_vectors
        self.shape, self.dtype, self.ndim = (int(offsets[-1]), dim), np.dtype(np.float16), 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("ColBERT token rows are read by contiguous slices: view[offsets[r]:offsets[r + 1]]")
        a, b, _ = key.indices(self.shape[0])
        first, last = np.searchsorted(self.offsets, [a, b], side="right") - 1
        pieces = [np.zeros((0, self.shape[1]), np.float16)]
        for row in range(int(first), min(int(last) + 1, len(self.offsets) - 1)):
            lo, hi = max(a, int(self.offsets[row])), min(b, int(self.offsets[row + 1]))
            if hi > lo:
                pieces.append(np.asarray(self.row_vectors(row))[lo - int(self.offsets[row]):hi - int(self.offsets[row])])
        return np.concatenate(pieces)
