"""Writing one generation of an index folder: every change writes a complete new generation, then switches.

Folder layout::

    my-index/
      CURRENT              name of the live generation ("gen-000003"), replaced atomically
      .lock                writers hold an exclusive lock on it
      gen-000003/          one complete, immutable generation
        manifest.json      model, outputs, dense settings, counts, file sizes
        docs.sqlite        row, id, text, title, metadata (JSON)
        dense.npy          (N, D) float32            dense.faiss  (approximate factories only)
        sparse_indptr.npy / sparse_indices.npy / sparse_values.npy      documents x vocabulary CSR
        colbert_offsets.npy (N + 1,) int64, colbert.f16 raw (T, C) float16, memory-mapped

A writer builds ``.gen-000004.tmp`` (files fsynced), renames it to ``gen-000004``, then replaces ``CURRENT``.
A kill before the replace leaves ``CURRENT`` on the previous, untouched generation; the next writer removes
the leftovers. The previous generation is kept so readers that opened it stay valid.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from typing import Any, Iterator

import numpy as np

from bgekit.index import documents as D

POINTER = "CURRENT"
LOCK = ".lock"
KEEP_GENERATIONS = 2
COPY_ROWS = 1 << 20  # ColBERT token rows copied per step
_GEN = re.compile(r"^gen-(\d{6})$")


class IndexBusyError(OSError):
    """Another process holds the index's write lock."""


def gen_name(n: int) -> str:
    return f"gen-{n:06d}"


def read_pointer(root: str) -> str | None:
    path = os.path.join(root, POINTER)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        name = f.read().strip()
    if not _GEN.match(name) or not os.path.isdir(os.path.join(root, name)):
        raise ValueError(f"{path}: points to {name!r}, which is not a generation folder of this index")
    return name


def _fsync_path(path: str) -> None:
    """Make a written file (or a folder's entries) durable. Crash tests patch this to stop at any step."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - folders cannot be fsynced on some platforms
        pass
    finally:
        os.close(fd)


def _switch_pointer(root: str, name: str) -> None:
    from bgekit.io import atomic_write_text

    atomic_write_text(os.path.join(root, POINTER), name + "\n")
    _fsync_path(root)


@contextlib.contextmanager
def write_lock(root: str) -> Iterator[None]:
    """Hold the index's exclusive write lock (POSIX flock; other platforms go unlocked)."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, LOCK), "a+") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusyError(f"index {root!r} is being changed by another process; try again when it finishes") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def collect_garbage(root: str, current: str | None, keep: int = KEEP_GENERATIONS) -> None:
    """Remove unfinished generations, generations newer than ``current`` (never switched to) and old ones."""
    live = int(current[4:]) if current else -1
    gens = sorted(int(m.group(1)) for m in map(_GEN.match, os.listdir(root)) if m)
    for name in os.listdir(root):
        if name.startswith(".gen-") and name.endswith(".tmp"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    for n in gens:
        if n > live or n <= live - keep:
            shutil.rmtree(os.path.join(root, gen_name(n)), ignore_errors=True)


class GenerationWriter:
    """Accumulates rows (copied from the live generation, then appended) and commits them as a new generation.

    Args:
        root: the index folder (the caller holds :func:`write_lock`).
        number: the new generation's number.
        manifest: settings to record: ``model``, ``outputs``, ``dense`` ({factory, metric, search_params}).
    """

    def __init__(self, root: str, number: int, manifest: dict):
        self.root, self.number, self.manifest = root, number, dict(manifest)
        self.outputs = tuple(manifest["outputs"])
        self.tmp = os.path.join(root, f".{gen_name(number)}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.db = D.create_table(os.path.join(self.tmp, "docs.sqlite"))
        self.count = 0
        self.dense: list[np.ndarray] = []
        self.sparse_lengths: list[np.ndarray] = []
        self.sparse_indices: list[np.ndarray] = []
        self.sparse_values: list[np.ndarray] = []
        self.colbert_lengths: list[np.ndarray] = []
        self.colbert_file = open(os.path.join(self.tmp, "colbert.f16"), "wb") if "colbert" in self.outputs else None
        self.base_faiss: Any = None  # a live approximate FAISS index to extend instead of rebuilding

    def __enter__(self) -> "GenerationWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """On an error, close and remove the unfinished generation (a kill leaves it to the next writer)."""
        if exc_type is None:
            return
        with contextlib.suppress(Exception):
            self.db.close()
        if self.colbert_file is not None:
            self.colbert_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def copy(self, old: Any, drop_rows: np.ndarray) -> None:
        """Copy the rows of ``old`` (an open IndexStore) except ``drop_rows``, in order."""
        keep = np.ones(old.count, dtype=bool)
        keep[np.asarray(drop_rows, dtype=np.int64)] = False
        self.count = D.copy_rows(self.db, old.docs_path, np.flatnonzero(~keep))
        if "dense" in self.outputs:
            self.dense.append(np.asarray(old.dense_vectors[keep], dtype=np.float32))
            if keep.all() and old.dense is not None and not old.dense.exact:
                self.base_faiss = old.dense.index
        if "sparse" in self.outputs:
            sub = old.sparse.matrix[keep]
            self.sparse_lengths.append(np.diff(sub.indptr).astype(np.int64))
            self.sparse_indices.append(sub.indices.astype(np.int64)), self.sparse_values.append(sub.data.astype(np.float32))
        if "colbert" in self.outputs:
            offsets = old.colbert_offsets
            self.colbert_lengths.append(np.diff(offsets)[keep])
            for start, end in _runs(keep):
                for a in range(int(offsets[start]), int(offsets[end]), COPY_ROWS):
                    b = min(a + COPY_ROWS, int(offsets[end]))
                    self.colbert_file.write(np.ascontiguousarray(old.colbert[a:b], dtype=np.float16).tobytes())

    def append(self, docs: D.Documents, vectors: Any) -> None:
        """Append documents with their vectors (a :class:`~bgekit.index.store.Vectors`), already checked."""
        D.insert_rows(self.db, self.count, docs)
        self.count += len(docs)
        if "dense" in self.outputs:
            self.dense.append(np.asarray(vectors.dense, dtype=np.float32))
        if "sparse" in self.outputs:
            self.sparse_lengths.append(np.array([len(v) for v in vectors.sparse], dtype=np.int64))
            self.sparse_indices.extend(np.asarray(v.indices, dtype=np.int64) for v in vectors.sparse)
            self.sparse_values.extend(np.asarray(v.values, dtype=np.float32) for v in vectors.sparse)
        if "colbert" in self.outputs:
            self.colbert_lengths.append(np.array([len(c) for c in vectors.colbert], dtype=np.int64))
            for c in vectors.colbert:
                self.colbert_file.write(np.ascontiguousarray(c, dtype=np.float16).tobytes())

    def commit(self) -> str:
        """Write the arrays and manifest, make everything durable, switch CURRENT. Returns the generation name."""
        files: dict[str, int] = {"docs.sqlite": 0}
        self.db.close()
        if "dense" in self.outputs:
            self._dense_files(files)
        if "sparse" in self.outputs:
            self._sparse_files(files)
        if self.colbert_file is not None:
            self.colbert_file.close()
            lengths = np.concatenate(self.colbert_lengths) if self.colbert_lengths else np.zeros(0, np.int64)
            self._save("colbert_offsets.npy", np.r_[0, np.cumsum(lengths)].astype(np.int64), files)
            files["colbert.f16"] = 0
        for name in files:
            path = os.path.join(self.tmp, name)
            files[name] = os.path.getsize(path)
            _fsync_path(path)
        manifest = {**self.manifest, "format": "bgekit-index", "version": 1, "generation": self.number,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "count": self.count, "files": files}
        with open(os.path.join(self.tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
        _fsync_path(os.path.join(self.tmp, "manifest.json"))
        _fsync_path(self.tmp)
        name = gen_name(self.number)
        os.replace(self.tmp, os.path.join(self.root, name))
        _fsync_path(self.root)
        _switch_pointer(self.root, name)
        collect_garbage(self.root, name)
        return name

    # ---------------------------------------------------------------- internals
    def _save(self, name: str, array: np.ndarray, files: dict) -> None:
        np.save(os.path.join(self.tmp, name), array)
        files[name] = 0

    def _dense_files(self, files: dict) -> None:
        dim = self.manifest["model"]["dim"]
        vectors = np.concatenate(self.dense) if self.dense else np.zeros((0, dim), np.float32)
        self._save("dense.npy", vectors, files)
        settings = self.manifest["dense"]
        if settings["factory"].strip().lower() == "flat":
            return
        import faiss

        from bgekit.index.dense import DenseIndex

        if self.base_faiss is not None and self.base_faiss.is_trained:  # rows only appended: extend a copy
            index = faiss.clone_index(self.base_faiss)
            added = vectors[index.ntotal:]
            if len(added):
                index.add(np.ascontiguousarray(added))
        else:  # rows removed (or a first build): rebuild, training approximate indexes again
            index = DenseIndex.from_vectors(vectors, factory=settings["factory"], metric=settings["metric"]).index
        faiss.write_index(index, os.path.join(self.tmp, "dense.faiss"))
        files["dense.faiss"] = 0

    def _sparse_files(self, files: dict) -> None:
        lengths = np.concatenate(self.sparse_lengths) if self.sparse_lengths else np.zeros(0, np.int64)
        indices = np.concatenate(self.sparse_indices) if self.sparse_indices else np.zeros(0, np.int64)
        values = np.concatenate(self.sparse_values) if self.sparse_values else np.zeros(0, np.float32)
        self._save("sparse_indptr.npy", np.r_[0, np.cumsum(lengths)].astype(np.int64), files)
        self._save("sparse_indices.npy", indices, files)
        self._save("sparse_values.npy", values, files)
        self.manifest["sparse_vocab"] = max(int(indices.max()) + 1 if len(indices) else 1,
                                            int(self.manifest.get("sparse_vocab") or 1))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a boolean mask."""
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
