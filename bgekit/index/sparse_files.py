"""BGE-M3 sparse weights on disk, as an index segment and a streamed evaluation store them: the rows x vocabulary
CSR in ``sparse_{indptr,indices,values}.npy``, streamed in by :class:`SparseAppender`, and its transpose (the
postings, ``sparse_inv_*.npy``, :func:`write_postings`), both opened memory-mapped by :func:`open_sparse`.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from bgekit.index.arrays import NpyAppender


class SparseAppender:
    """Sparse weights streamed row chunk by row chunk into ``folder/sparse_{indptr,indices,values}.npy`` (a CSR
    matrix, rows x vocabulary); :meth:`close` closes the files and writes the postings (:func:`write_postings`)."""

    NAMES = ("sparse_indptr.npy", "sparse_indices.npy", "sparse_values.npy")

    def __init__(self, folder: str):
        self.folder, self.rows, self.vocab, self.nnz = folder, 0, 1, 0
        self.arrays = {name: NpyAppender(os.path.join(folder, name), dtype)
                       for name, dtype in zip(self.NAMES, (np.int64, np.int32, np.float32))}
        self.arrays["sparse_indptr.npy"].append(np.zeros(1, np.int64))

    def append_rows(self, lengths: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        """Rows given as CSR pieces: nonzeros per row, then the rows' token ids and weights concatenated."""
        self.arrays["sparse_indptr.npy"].append(self.nnz + np.cumsum(lengths, dtype=np.int64))
        self.arrays["sparse_indices.npy"].append(indices)
        self.arrays["sparse_values.npy"].append(values)
        self.rows += len(lengths)
        self.nnz += int(np.sum(lengths))
        if len(indices):
            if int(indices.max()) >= 2**31 - 1:
                raise ValueError(f"sparse token id {int(indices.max())} is too large for the index (at most 2**31 - 2)")
            self.vocab = max(self.vocab, int(indices.max()) + 1)

    def append(self, vectors: Any) -> None:
        """Rows given as :class:`~bgekit.types.SparseVector` objects."""
        self.append_rows(np.array([len(v) for v in vectors], dtype=np.int64),
                         np.concatenate([np.asarray(v.indices, np.int64) for v in vectors] or [np.zeros(0, np.int64)]),
                         np.concatenate([np.asarray(v.values, np.float32) for v in vectors] or [np.zeros(0, np.float32)]))

    def abandon(self) -> None:
        for array in self.arrays.values():
            array.file.close()

    def close(self) -> list[str]:
        """Close the files and write the postings; returns every file's name."""
        for array in self.arrays.values():
            array.close()
        return [*self.NAMES, *write_postings(self.folder, self.rows, self.vocab, self.nnz)]


def write_postings(folder: str, rows: int, vocab: int, nnz: int) -> list[str]:
    """Write the postings (the transpose of the rows x vocabulary CSR in ``folder/sparse_{indptr,indices,values}.npy``)
    so readers memory-map both; returns the new files' names.

    Index arrays are int32 where the nonzeros allow (scipy keeps memory-mapped arrays of one index dtype), so the
    offsets are rewritten as int32 too. The transpose is built in memory once (the size of the sparse weights).
    """
    import scipy.sparse as sp

    load = lambda name: np.load(os.path.join(folder, f"sparse_{name}.npy"), mmap_mode="r")  # noqa: E731
    small = nnz < 2**31 - 1
    if small:  # (rows + 1,) offsets: rewritten as int32 to match the indices
        np.save(os.path.join(folder, "sparse_indptr.npy"), np.asarray(load("indptr"), dtype=np.int32))
    matrix = sp.csr_matrix((load("values"), load("indices"), load("indptr")), shape=(rows, vocab))
    inverted = matrix.T.tocsr()  # (V, rows)
    dtype = np.int32 if small else np.int64
    for name, array in (("values", inverted.data), ("indices", inverted.indices), ("indptr", inverted.indptr)):
        np.save(os.path.join(folder, f"sparse_inv_{name}.npy"), np.asarray(array, dtype=np.float32 if name == "values" else dtype))
    return ["sparse_inv_values.npy", "sparse_inv_indices.npy", "sparse_inv_indptr.npy"]


def open_sparse(path_of: Any, rows: int, vocab: int, postings: bool) -> Any:
    """A :class:`~bgekit.index.sparse.SparseIndex` over memory-mapped CSR files (``path_of(name)`` -> the path of
    ``sparse_{name}``, e.g. "indptr" or "inv_values"); without ``postings`` files the transpose is built in memory."""
    import scipy.sparse as sp

    from bgekit.index.sparse import SparseIndex

    load = lambda name: np.load(path_of(name), mmap_mode="r")  # noqa: E731
    matrix = sp.csr_matrix(tuple(load(k) for k in ("values", "indices", "indptr")), shape=(rows, vocab))
    inverted = None
    if postings:
        inverted = sp.csr_matrix(tuple(load(f"inv_{k}") for k in ("values", "indices", "indptr")), shape=(vocab, rows))
    return SparseIndex(matrix, inverted)
