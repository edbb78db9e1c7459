"""Embedding shards: a folder of .npy + JSON files that a distributed encode writes and an index or database loads.

Layout (no pickle anywhere)::

    OUT/
      manifest.json                 written last: format, count, dim, outputs, model, shards and file sizes
      shard-00000.ids.json          the shard's document ids, in corpus order (strings)
      shard-00000.dense.npy         (n, D) float32
      shard-00000.sparse_indptr.npy (n + 1,) int64   } BGE-M3 lexical weights as CSR rows: token ids ascending
      shard-00000.sparse_indices.npy (nnz,) int64    } (the same values as SparseVector)
      shard-00000.sparse_values.npy  (nnz,) float32  }

A folder is complete only when its manifest exists and every file has the size it records. The writer fills a
hidden temporary folder beside ``OUT`` and renames it into place after the manifest is written, so a job that
fails or is killed never leaves a partial ``OUT`` that reads as complete.

Example:
    >>> import os, tempfile, numpy as np
    >>> out = os.path.join(tempfile.mkdtemp(), "emb")
    >>> with ShardWriter(out, outputs=("dense",), shard_rows=2) as w:
    ...     w.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
    ...     _ = w.commit({"model": "toy"})
    >>> shards = read_shards(out)
    >>> shards.count, shards.ids(), shards.dense().shape
    (3, ['a', 'b', 'c'], (3, 3))
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Sequence

import numpy as np

from bgekit.errors import InputError, OutputError
from bgekit.types import SparseVector

FORMAT = "bgekit-shards"
OUTPUTS = ("dense", "sparse")
SPARSE_PARTS = ("indptr", "indices", "values")


class ShardWriter:
    """Write shards into a temporary folder; :meth:`commit` writes the manifest and moves the folder into place.

    Args:
        path: the output folder. It must not exist, or be a previous shard folder (replaced on commit), or be empty.
        outputs: "dense" and optionally "sparse".
        shard_rows: rows per shard file.
    """

    def __init__(self, path: str, outputs: Sequence[str] = ("dense",), shard_rows: int = 32768):
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown or "dense" not in outputs:
            raise ValueError(f"outputs must include 'dense' and be a subset of {', '.join(OUTPUTS)}; got {list(outputs)}")
        self.path = os.path.abspath(path)
        check_target(self.path)
        self.outputs = tuple(o for o in OUTPUTS if o in outputs)
        self.shard_rows = int(shard_rows)
        parent = os.path.dirname(self.path)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.path)}.", suffix=".partial", dir=parent)
        self.shards: list[dict] = []
        self.count, self.dim = 0, None
        self._pending: list[tuple[list[str], np.ndarray, list[SparseVector] | None]] = []
        self._pending_rows = 0

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.abort()  # after commit the temporary folder is gone; otherwise nothing partial stays behind

    def __len__(self) -> int:
        """Rows added so far (written or pending)."""
        return self.count + self._pending_rows

    def add(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector] | None = None) -> None:
        """Append rows (in order); a shard file is written whenever ``shard_rows`` rows are pending."""
        dense = np.ascontiguousarray(dense, dtype=np.float32)
        if dense.ndim != 2 or len(dense) != len(ids):
            raise ValueError(f"dense must be ({len(ids)}, D); got shape {dense.shape}")
        if self.dim is None:
            self.dim = int(dense.shape[1])
        elif dense.shape[1] != self.dim:
            raise ValueError(f"dense rows have {dense.shape[1]} dimensions; earlier rows had {self.dim}")
        if ("sparse" in self.outputs) != (sparse is not None) or (sparse is not None and len(sparse) != len(ids)):
            raise ValueError(f"sparse vectors must be given for every row exactly when outputs include 'sparse' "
                             f"(outputs: {list(self.outputs)})")
        self._pending.append(([str(i) for i in ids], dense, None if sparse is None else list(sparse)))
        self._pending_rows += len(ids)
        while self._pending_rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def _take(self, n: int) -> tuple[list[str], np.ndarray, list[SparseVector] | None]:
        ids: list[str] = []
        dense, sparse = [], []
        while len(ids) < n:
            i, d, s = self._pending.pop(0)
            k = min(n - len(ids), len(i))
            ids += i[:k]
            dense.append(d[:k])
            sparse += (s or [])[:k]
            if k < len(i):
                self._pending.insert(0, (i[k:], d[k:], None if s is None else s[k:]))
        self._pending_rows -= n
        return ids, np.concatenate(dense), sparse if "sparse" in self.outputs else None

    def _flush(self, n: int) -> None:
        ids, dense, sparse = self._take(n)
        name = f"shard-{len(self.shards):05d}"
        files = {f"{name}.ids.json": ids, f"{name}.dense.npy": dense}
        if sparse is not None:
            files.update({f"{name}.sparse_{k}.npy": v for k, v in zip(SPARSE_PARTS, to_csr(sparse))})
        sizes = {}
        for fname, value in files.items():
            full = os.path.join(self.tmp, fname)
            with open(full, "wb") as f:
                if fname.endswith(".json"):
                    f.write(json.dumps(value, ensure_ascii=False).encode("utf-8"))
                else:
                    np.save(f, value, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            sizes[fname] = os.path.getsize(full)
        self.shards.append({"name": name, "count": len(ids), "first_row": self.count, "files": sizes})
        self.count += len(ids)

    def commit(self, info: dict | None = None) -> str:
        """Write the last shard and the manifest (``info`` joins it), then move the folder to ``path``."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        manifest = {"format": FORMAT, "version": 1, "count": self.count, "dim": self.dim,
                    "outputs": list(self.outputs), **(info or {}), "shards": self.shards}
        with open(os.path.join(self.tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        _replace_folder(self.tmp, self.path)
        self.tmp = None
        return self.path

    def abort(self) -> None:
        """Remove the temporary folder (nothing was written to ``path``)."""
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def check_target(path: str) -> None:
    """OutputError unless ``path`` can receive shards: absent, an empty folder, or an earlier shard folder."""
    if os.path.isfile(path):
        raise OutputError(f"output {path!r} is a file; shards are written to a folder")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, "manifest.json")):
        raise OutputError(f"output folder {path!r} is not empty and holds no shards; choose a new or empty folder")


def _replace_folder(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is set aside first and removed after the move."""
    old = None
    if os.path.exists(dst):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", suffix=".old", dir=os.path.dirname(dst))
        os.rename(dst, os.path.join(old, "x"))
    os.rename(src, dst)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def to_csr(vectors: Sequence[SparseVector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, values) of sparse vectors, one CSR row each."""
    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(v) for v in vectors])
    indices = np.concatenate([v.indices for v in vectors]).astype(np.int64) if vectors else np.zeros(0, np.int64)
    values = np.concatenate([v.values for v in vectors]).astype(np.float32) if vectors else np.zeros(0, np.float32)
    return indptr, indices, values


class ShardSet:
    """A complete shard folder, checked on opening (manifest present, every file of its recorded size).

    Attributes:
        path, manifest, count, dim, outputs.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        mpath = os.path.join(self.path, "manifest.json")
        if not os.path.isdir(self.path):
            raise InputError(f"{self.path!r} is not a shard folder (it does not exist)")
        try:
            with open(mpath, encoding="utf-8") as f:
                self.manifest = json.load(f)
        except FileNotFoundError:
            raise InputError(f"{mpath} is missing: {self.path!r} is not a complete shard folder") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{mpath}: not valid JSON ({e})") from None
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != 1:
            raise InputError(f"{mpath}: not the manifest of bgekit shards of format version 1")
        for shard in self.manifest["shards"]:
            for fname, size in shard["files"].items():
                full = os.path.join(self.path, fname)
                actual = os.path.getsize(full) if os.path.isfile(full) else None
                if actual != size:
                    raise InputError(f"{full}: {'missing' if actual is None else f'{actual} bytes'} where the "
                                     f"manifest records {size} bytes; the shard folder is damaged")
        self.count, self.dim = int(self.manifest["count"]), self.manifest["dim"]
        self.outputs = tuple(self.manifest["outputs"])

    def __len__(self) -> int:
        return self.count

    def _load(self, fname: str) -> np.ndarray:
        return np.load(os.path.join(self.path, fname), allow_pickle=False)

    def iter_shards(self) -> Iterator[tuple[list[str], np.ndarray, list[SparseVector] | None]]:
        """``(ids, dense (n, D) float32, sparse vectors or None)`` per shard, in corpus order."""
        for shard in self.manifest["shards"]:
            name = shard["name"]
            with open(os.path.join(self.path, f"{name}.ids.json"), encoding="utf-8") as f:
                ids = json.load(f)
            sparse = None
            if "sparse" in self.outputs:
                indptr, indices, values = (self._load(f"{name}.sparse_{k}.npy") for k in SPARSE_PARTS)
                sparse = [SparseVector(indices[a:b], values[a:b]) for a, b in zip(indptr[:-1], indptr[1:])]
            yield ids, self._load(f"{name}.dense.npy"), sparse

    def reader(self) -> "RowReader":
        """A :class:`RowReader` over the rows, from the first."""
        return RowReader(self)

    def ids(self) -> list[str]:
        """All document ids, in corpus order."""
        out: list[str] = []
        for shard in self.manifest["shards"]:
            with open(os.path.join(self.path, f"{shard['name']}.ids.json"), encoding="utf-8") as f:
                out += json.load(f)
        return out

    def dense(self) -> np.ndarray:
        """All dense rows, (count, D) float32."""
        parts = [self._load(f"{s['name']}.dense.npy") for s in self.manifest["shards"]]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim or 0), np.float32)

    def sparse(self) -> list[SparseVector]:
        if "sparse" not in self.outputs:
            raise ValueError(f"{self.path!r} holds no sparse vectors (outputs: {list(self.outputs)})")
        return [v for _, _, s in self.iter_shards() for v in s]


class RowReader:
    """The rows of a :class:`ShardSet` in order, taken a chunk at a time (at most one shard file in memory).

    For a consumer that streams its own documents (an index build over a streamed corpus): each
    :meth:`take` returns the vectors of the next rows and checks that their ids are the ones expected.
    """

    def __init__(self, shards: ShardSet):
        self._shards = shards.iter_shards()
        self._ids: list[str] = []
        self._dense = np.zeros((0, shards.dim or 0), np.float32)
        self._sparse: list[SparseVector] | None = [] if "sparse" in shards.outputs else None
        self.row = 0

    def take(self, ids: Sequence[str]) -> tuple[np.ndarray, list[SparseVector] | None]:
        """(dense (n, D), sparse vectors or None) of the next ``len(ids)`` rows.

        Raises:
            InputError: the shards end early, or hold other ids than ``ids`` (the first difference named).
        """
        ids = [str(i) for i in ids]
        while len(self._ids) < len(ids):
            try:
                more_ids, dense, sparse = next(self._shards)
            except StopIteration:
                raise InputError(f"the shards end at row {self.row + len(self._ids)}; "
                                 f"{len(ids) - len(self._ids)} more rows were expected") from None
            self._ids += more_ids
            self._dense = np.concatenate([self._dense, dense])
            if self._sparse is not None:
                self._sparse += sparse
        n = len(ids)
        if self._ids[:n] != ids:
            k = next(k for k in range(n) if self._ids[k] != ids[k])
            raise InputError(f"row {self.row + k}: the shards hold id {self._ids[k]!r} where {ids[k]!r} was expected")
        dense, sparse = self._dense[:n], None if self._sparse is None else self._sparse[:n]
        self._ids, self._dense = self._ids[n:], self._dense[n:]
        if self._sparse is not None:
            self._sparse = self._sparse[n:]
        self.row += n
        return dense, sparse


def read_shards(path: str) -> ShardSet:
    """Open a complete shard folder (see the module docstring)."""
    return ShardSet(path)
