"""On-disk cache of corpus embeddings, keyed by what decides them: the model's files, the encoding settings and
the corpus content.

The model is identified by a hash of its files, not its folder name: FlagEmbedding keys its cache by folder
name, so a model fine-tuned in place silently gets the embeddings of its earlier weights. Each entry is a few
``.npy`` arrays plus a JSON manifest, all written atomically; the manifest is written last, so an entry
without one (a run killed mid-write) is simply a miss.

Example:
    >>> import numpy as np, tempfile
    >>> cache = EmbeddingCache(tempfile.mkdtemp())
    >>> key = cache.key("model-sha", {"max_length": 256}, "corpus-sha")
    >>> cache.load(key) is None
    True
    >>> cache.save(key, {"dense": np.ones((2, 3), np.float32)})
    >>> cache.load(key)["dense"].shape
    (2, 3)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from typing import Any

import numpy as np

from bgekit.io import atomic_save_npy, atomic_write_text

logger = logging.getLogger(__name__)

_MODEL_HASHES: dict[tuple, str] = {}  # (folder, file stats) -> hash, so a process hashes a model once


def _model_files(folder: str) -> list[tuple[str, str]]:
    """(relative path, absolute path) of every regular file under ``folder``, hidden entries skipped, sorted."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in files:
            if not name.startswith("."):
                path = os.path.join(root, name)
                out.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return sorted(out)


def model_fingerprint(folder: str) -> str:
    """sha256 over the names and contents of a model folder's files (weights, config, tokenizer, heads).

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder {folder!r} does not exist")
    files = _model_files(folder)
    stats = tuple((rel, os.stat(path).st_size, os.stat(path).st_mtime_ns) for rel, path in files)
    memo_key = (os.path.realpath(folder), stats)
    if memo_key not in _MODEL_HASHES:
        h = hashlib.sha256()
        for rel, path in files:
            h.update(rel.encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(b"\0")
        _MODEL_HASHES[memo_key] = h.hexdigest()
    return _MODEL_HASHES[memo_key]


class EmbeddingCache:
    """A folder of cached arrays: ``KEY.json`` (manifest) and ``KEY.NAME.npy`` (one file per array).

    Args:
        folder: where entries live (created on first save).
    """

    def __init__(self, folder: str):
        if not isinstance(folder, (str, os.PathLike)) or not str(folder):
            raise TypeError(f"cache folder must be a path, got {folder!r}")
        self.folder = os.fspath(folder)
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            from bgekit.errors import UsageError

            raise UsageError(f"cache folder {self.folder!r} is a file; give a folder (or a new path) for the cache")

    @staticmethod
    def key(model_fingerprint: str, settings: dict[str, Any], data_fingerprint: str) -> str:
        """The entry name for a (model, settings, data) triple: a sha256 of their canonical JSON."""
        payload = json.dumps({"model": model_fingerprint, "settings": settings, "data": data_fingerprint},
                             sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:40]

    def _manifest(self, key: str) -> str:
        return os.path.join(self.folder, f"{key}.json")

    def array_path(self, key: str, name: str) -> str:
        return os.path.join(self.folder, f"{key}.{name}.npy")

    def load(self, key: str, mmap: bool = False) -> dict[str, np.ndarray] | None:
        """The cached arrays (read-only memory maps with ``mmap``), or None on a miss (or an entry that is
        incomplete or damaged)."""
        path = self._manifest(key)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
            out = {}
            for name, info in manifest["arrays"].items():
                arr = np.load(self.array_path(key, name), allow_pickle=False, mmap_mode="r" if mmap else None)
                if list(arr.shape) != info["shape"] or str(arr.dtype) != info["dtype"]:
                    raise ValueError(f"{name}: shape {arr.shape} / dtype {arr.dtype} differ from the manifest")
                out[name] = arr
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("ignoring damaged cache entry %s (%s); it will be recomputed", path, e)
            return None
        logger.info("cache hit: %s", path)
        return out

    def save(self, key: str, arrays: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        """Store ``arrays`` under ``key``; ``meta`` (model, settings...) goes into the manifest for people to read.

        An array may be given as the path of a finished .npy file (a streamed encoding's output): it is moved
        into the cache, not read.
        """
        if not arrays:
            raise ValueError("nothing to cache: arrays is empty")
        info = {}
        for name, arr in arrays.items():
            if not name.replace("_", "").isalnum():
                raise ValueError(f"array name {name!r} must be letters, digits and underscores")
            if isinstance(arr, (str, os.PathLike)):
                os.makedirs(self.folder, exist_ok=True)
                target = self.array_path(key, name)
                shutil.move(os.fspath(arr), target + ".part")  # a rename on the same file system
                with open(target + ".part", "rb+") as f:  # durable before the manifest names it
                    os.fsync(f.fileno())
                os.replace(target + ".part", target)
                arr = np.load(target, mmap_mode="r")
            else:
                arr = np.ascontiguousarray(arr)
                atomic_save_npy(self.array_path(key, name), arr)
            info[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        manifest = {"key": key, "arrays": info, "meta": meta or {}}
        atomic_write_text(self._manifest(key), json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
