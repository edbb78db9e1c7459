"""One immutable segment of an index: documents and their vectors, written once by streaming, then only read.

A segment folder (``seg-000005``) holds, for its ``rows`` documents numbered 0..rows-1 (local rows)::

    segment.json         format, rows, sparse vocabulary width, file sizes
    docs.sqlite          row, id, text, title, metadata (JSON)
    dense.npy            (rows, D) float32, memory-mapped      dense.faiss  (approximate factories only)
    dense.empty.faiss    the trained, empty FAISS index (factories that train, e.g. IVF): later segments reuse it
    sparse_indptr.npy / sparse_indices.npy / sparse_values.npy      rows x vocabulary CSR, memory-mapped
    sparse_inv_indptr.npy / sparse_inv_indices.npy / sparse_inv_values.npy   its transpose (postings per token)
    colbert_offsets.npy  (rows + 1,) int64        colbert.f16   raw (T, C) float16, memory-mapped

:class:`SegmentWriter` streams rows to disk (a chunk at a time: texts and vectors are never all in memory),
copying live rows of older segments or appending new documents, and commits the folder atomically.
:class:`Segment` opens one for reading. Deleted rows are not a segment's business: the generation records them.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any

import numpy as np

from bgekit.index import documents as D
from bgekit.index import generation as G
from bgekit.index import integrity as I
from bgekit.index.arrays import NpyAppender
from bgekit.index.dense import rank_ties
from bgekit.index.sparse_files import SparseAppender, open_sparse

COPY_ROWS = 1 << 13         # rows (and ColBERT token rows x 16) copied per step: 12 MB of 384-d vectors
FAISS_ROWS = 1 << 20        # vectors added to an approximate FAISS index per step (it trains on the first)


class SegmentWriter:
    """Streams rows into a new segment folder and commits it.

    Args:
        root: the index folder (the caller holds the write lock).
        number: the segment's number (that of the generation that writes it).
        manifest: the index settings: ``model`` (dim, colbert_dim), ``outputs``, ``dense`` ({factory, metric}).
    """

    def __init__(self, root: str, number: int, manifest: dict):
        self.root, self.name = root, G.seg_name(number)
        self.outputs, self.dense_settings = tuple(manifest["outputs"]), manifest["dense"]
        self.dim, self.colbert_dim = manifest["model"]["dim"], manifest["model"].get("colbert_dim")
        self.tmp = os.path.join(root, f".{self.name}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.db = D.create_table(os.path.join(self.tmp, "docs.sqlite"))
        self.count, self.tokens = 0, 0
        path = lambda name: os.path.join(self.tmp, name)  # noqa: E731
        self.arrays = {"dense.npy": NpyAppender(path("dense.npy"), np.float32, (self.dim,))}
        self.sparse = SparseAppender(self.tmp) if "sparse" in self.outputs else None
        self.colbert_file = None
        if "colbert" in self.outputs:
            self.arrays["colbert_offsets.npy"] = NpyAppender(path("colbert_offsets.npy"), np.int64)
            self.arrays["colbert_offsets.npy"].append(np.zeros(1, np.int64))
            self.colbert_file = open(path("colbert.f16"), "wb")

    def __enter__(self) -> "SegmentWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """On an error, close and remove the unfinished segment (a kill leaves it to the next writer)."""
        if exc_type is None:
            return
        with contextlib.suppress(Exception):
            self.db.close()
        for f in [a.file for a in self.arrays.values()] + [self.colbert_file]:
            if f is not None:
                f.close()
        if self.sparse is not None:
            self.sparse.abandon()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------- rows in
    def _colbert_lengths(self, lengths: np.ndarray) -> None:
        self.arrays["colbert_offsets.npy"].append(self.tokens + np.cumsum(lengths, dtype=np.int64))
        self.tokens += int(np.sum(lengths))

    def append(self, docs: D.Documents, vectors: Any) -> None:
        """Append documents with their vectors (a checked :class:`~bgekit.index.store.Vectors`)."""
        D.insert_rows(self.db, self.count, docs)
        self.count += len(docs)
        self.arrays["dense.npy"].append(vectors.dense)
        if self.sparse is not None:
            self.sparse.append(vectors.sparse)
        if self.colbert_file is not None:
            self._colbert_lengths(np.array([len(c) for c in vectors.colbert], dtype=np.int64))
            for c in vectors.colbert:
                self.colbert_file.write(np.ascontiguousarray(c, dtype=np.float16).tobytes())

    def copy(self, segment: "Segment", deleted: np.ndarray) -> None:
        """Copy the rows of ``segment`` except the ``deleted`` local rows, in order, a chunk at a time."""
        keep = np.ones(segment.rows, dtype=bool)
        keep[np.asarray(deleted, dtype=np.int64)] = False
        self.count += D.copy_rows(self.db, segment.docs_path, np.flatnonzero(~keep), start=self.count)
        for a in range(0, segment.rows, COPY_ROWS):
            b = min(a + COPY_ROWS, segment.rows)
            mask = keep[a:b]
            self.arrays["dense.npy"].append(np.asarray(segment.dense[a:b])[mask])
            if "sparse" in self.outputs:
                sub = segment.sparse.matrix[a:b][mask]
                self.sparse.append_rows(np.diff(sub.indptr).astype(np.int64), sub.indices.astype(np.int64), sub.data)
            if self.colbert_file is not None:
                offsets = segment.colbert_offsets
                self._colbert_lengths(np.diff(offsets[a:b + 1])[mask])
                for start, end in _runs(mask):
                    for x in range(int(offsets[a + start]), int(offsets[a + end]), COPY_ROWS * 16):
                        y = min(x + COPY_ROWS * 16, int(offsets[a + end]))
                        self.colbert_file.write(np.ascontiguousarray(segment.colbert[x:y], dtype=np.float16).tobytes())

    # ---------------------------------------------------------------- commit
    def commit(self, template: Any = None) -> dict:
        """Close the arrays, build the FAISS index if approximate, make everything durable, rename the folder.

        Args:
            template: a trained, empty FAISS index to fill (from an older segment) instead of training anew.

        Returns:
            The segment's entry for a generation manifest: ``{"name", "rows", "deleted": 0}``.
        """
        self.db.close()
        for array in self.arrays.values():
            array.close()
        if self.colbert_file is not None:
            self.colbert_file.close()
        names = ["docs.sqlite", *self.arrays] + (["colbert.f16"] if self.colbert_file is not None else [])
        if self.sparse is not None:
            names += self.sparse.close()
        if self.dense_settings["factory"].strip().lower() != "flat":
            names += self._faiss_files(template)
        files = {}
        for name in names:
            path = os.path.join(self.tmp, name)
            files[name] = os.path.getsize(path)
            G._fsync_path(path)
        meta = {"format": "bgekit-segment", "version": 1, "rows": self.count,
                "sparse_vocab": self.sparse.vocab if self.sparse is not None else 1, "files": files}
        with open(os.path.join(self.tmp, "segment.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        G._fsync_path(os.path.join(self.tmp, "segment.json"))
        G._fsync_path(self.tmp)
        os.replace(self.tmp, os.path.join(self.root, self.name))
        G._fsync_path(self.root)
        return {"name": self.name, "rows": self.count, "deleted": 0}

    def _faiss_files(self, template: Any) -> list[str]:
        import faiss

        from bgekit.index.dense import DenseIndex

        vectors = np.load(os.path.join(self.tmp, "dense.npy"), mmap_mode="r")
        settings = self.dense_settings
        index = DenseIndex(self.dim, factory=settings["factory"], metric=settings["metric"])
        needs_training = not index.index.is_trained
        if template is not None and template.is_trained:
            index.index = faiss.clone_index(template)
        for a in range(0, len(vectors), FAISS_ROWS):  # approximate indexes train on their first (large) add
            index.add(np.asarray(vectors[a:a + FAISS_ROWS]))
        faiss.write_index(index.index, os.path.join(self.tmp, "dense.faiss"))
        if not (needs_training and index.index.is_trained):
            return ["dense.faiss"]
        empty = faiss.clone_index(index.index)
        empty.reset()
        faiss.write_index(empty, os.path.join(self.tmp, "dense.empty.faiss"))
        return ["dense.faiss", "dense.empty.faiss"]


class Segment:
    """An open segment: memory-mapped dense (and ColBERT) vectors, the sparse CSR, the FAISS index, the documents.

    Args:
        folder: the segment folder (or a version 1 generation folder, read as one segment).
        outputs, dim, colbert_dim, dense_settings: the index's settings.
        search_params: FAISS search parameters for an approximate index.
        meta: the checked segment.json (read when not given).
    """

    def __init__(self, folder: str, outputs: tuple[str, ...], dim: int, colbert_dim: int | None, dense_settings: dict,
                 search_params: dict | None = None, meta: dict | None = None):
        meta = I.read_segment(folder) if meta is None else meta
        self.folder, self.name, self.rows = folder, os.path.basename(folder), int(meta["rows"])
        self.dense = np.load(os.path.join(folder, "dense.npy"), mmap_mode="r")
        if self.dense.shape != (self.rows, dim):
            raise I.InputError(f"{os.path.join(folder, 'dense.npy')}: shape {self.dense.shape} where {(self.rows, dim)} "
                               "is recorded; the index is damaged")
        self.metric, self.index, self.template = dense_settings["metric"], None, None
        if dense_settings["factory"].strip().lower() != "flat":
            self._load_faiss(folder, dense_settings, search_params)
        self.sparse = self.colbert = self.colbert_offsets = None
        if "sparse" in outputs:
            # older segments (and version 1 folders) have no postings file: the postings are built on open
            self.sparse = open_sparse(lambda name: os.path.join(folder, f"sparse_{name}.npy"), self.rows,
                                      int(meta.get("sparse_vocab") or 1), "sparse_inv_indptr.npy" in meta["files"])
        if "colbert" in outputs:
            self.colbert_offsets = np.load(os.path.join(folder, "colbert_offsets.npy"))
            total = int(self.colbert_offsets[-1])
            self.colbert = (np.memmap(os.path.join(folder, "colbert.f16"), dtype=np.float16, mode="r",
                                      shape=(total, colbert_dim)) if total else np.zeros((0, colbert_dim), np.float16))
        self.docs_path = os.path.join(folder, "docs.sqlite")
        self.db = D.open_readonly(self.docs_path, count=self.rows)

    def _load_faiss(self, folder: str, settings: dict, search_params: dict | None) -> None:
        import faiss

        from bgekit.index.dense import DenseIndex

        index = DenseIndex(self.dense.shape[1], factory=settings["factory"], metric=settings["metric"])
        # memory-mapped, not read into memory: a segment is immutable, and FAISS reads HNSW graphs and IVF lists
        # in place (IO_FLAG_MMAP_IFC, FAISS >= 1.8)
        flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) | getattr(faiss, "IO_FLAG_READ_ONLY", 0)
        index.index = faiss.read_index(os.path.join(folder, "dense.faiss"), flags)
        for name, value in (search_params or {}).items():
            index._set_param(name, value)
        self.index = index.index
        empty = os.path.join(folder, "dense.empty.faiss")
        self.template = faiss.read_index(empty) if os.path.isfile(empty) else None

    def search_dense(self, queries: np.ndarray, k: int, deleted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live rows per query: (scores, local rows), each (Q, k), best first, -inf / -1 padded.

        An approximate index skips deleted rows through a FAISS ID selector; exact search (``faiss.knn`` over
        the memory map) over-fetches and widens until every query has k live rows (or all rows are read).
        """
        import faiss

        if self.index is not None:
            params = _excluding(self.index, deleted)
            dist, ids = self.index.search(queries, k, params=params) if params is not None else self.index.search(queries, k)
            return _drop(dist, ids, deleted, k, self.metric)
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        fetch = min(self.rows, 2 * k + 8 if len(deleted) else k)
        while True:
            dist, ids = faiss.knn(queries, np.asarray(self.dense), fetch, metric=metric)
            scores, rows = _drop(dist, ids, deleted, k, self.metric)
            if fetch >= self.rows or (rows >= 0).sum(1).min() >= k:
                return scores, rows
            fetch = min(self.rows, fetch * 4)


def _drop(dist: np.ndarray, ids: np.ndarray, deleted: np.ndarray, k: int, metric: str):
    """FAISS results -> scores (higher is better) without deleted rows, the best k, ties to the lower row."""
    scores = (-dist if metric == "l2" else dist).astype(np.float32)
    dead = (ids < 0) | (np.isin(ids, deleted) if len(deleted) else False)
    scores[dead], ids[dead] = -np.inf, -1
    return rank_ties(scores, ids, k)


def _excluding(index: Any, deleted: np.ndarray) -> Any:
    """FAISS search parameters that skip the deleted ids while keeping the index's own efSearch / nprobe."""
    import faiss

    if not len(deleted):
        return None
    selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.asarray(deleted, dtype=np.int64)))
    if hasattr(index, "hnsw"):
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch)
    else:
        try:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=faiss.extract_index_ivf(index).nprobe)
        except (RuntimeError, TypeError):
            params = faiss.SearchParameters(sel=selector)
    params._keep = selector  # the selector must outlive the parameters
    return params


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a boolean mask."""
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
