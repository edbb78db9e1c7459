"""The index folder's generations: immutable segments, tombstones, and an atomically switched pointer.

Folder layout (format version 2)::

    my-index/
      CURRENT              name of the live generation ("gen-000007"), replaced atomically
      .lock                writers hold an exclusive lock on it
      seg-000001/          one immutable segment (see :mod:`bgekit.index.segment`): documents and their vectors
        segment.json       row count, vocabulary width, file sizes
        docs.sqlite  dense.npy  [dense.faiss  dense.empty.faiss]  [sparse_*.npy]  [colbert_offsets.npy colbert.f16]
      seg-000005/          a later segment: documents added (or segments merged) by generation 5
      gen-000007/          one generation: which segments are live, and which of their rows are deleted
        manifest.json      model, outputs, dense settings, count, segments [{name, rows, deleted}], file sizes
        seg-000001.deleted.npy    sorted local rows of seg-000001 deleted (tombstones), when any

A change writes at most one new segment (``.seg-N.tmp``, fsynced, renamed to ``seg-N``), then a new generation
(``.gen-N.tmp`` -> ``gen-N``), then replaces ``CURRENT``. A kill before the replace leaves ``CURRENT`` on the
previous generation, whose segments are untouched; the next writer removes the leftovers. The two newest
generations and every segment they name are kept, so readers that opened them stay valid.

Version 1 folders (every generation a complete copy: ``gen-N/`` holding manifest.json, docs.sqlite, dense.npy
...) still open: the generation is read as one segment. The first change rewrites it as a version 2 segment.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from typing import Iterator

import numpy as np

POINTER = "CURRENT"
LOCK = ".lock"
KEEP_GENERATIONS = 2
FORMAT_VERSION = 2
_GEN = re.compile(r"^gen-(\d{6})$")
_SEG = re.compile(r"^seg-(\d{6})$")


class IndexBusyError(OSError):
    """Another process holds the index's write lock."""


def gen_name(n: int) -> str:
    return f"gen-{n:06d}"


def seg_name(n: int) -> str:
    return f"seg-{n:06d}"


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


def _segments_named(folder: str) -> set[str] | None:
    """Segment names a generation's manifest lists (a version 1 generation lists none); None if unreadable."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        return {s["name"] for s in manifest.get("segments", [])}
    except (OSError, ValueError, TypeError, KeyError):
        return None


def collect_garbage(root: str, current: str | None, keep: int = KEEP_GENERATIONS) -> None:
    """Remove unfinished folders, generations newer than ``current`` (never switched to) or older than the kept
    ones, and segments no kept generation names."""
    live = int(current[4:]) if current else -1
    for name in os.listdir(root):
        if name.startswith((".gen-", ".seg-")) and name.endswith(".tmp"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    kept = []
    for n in sorted(int(m.group(1)) for m in map(_GEN.match, os.listdir(root)) if m):
        if n > live or n <= live - keep:
            shutil.rmtree(os.path.join(root, gen_name(n)), ignore_errors=True)
        else:
            kept.append(gen_name(n))
    named: set[str] = set()
    for gen in kept:
        segments = _segments_named(os.path.join(root, gen))
        if segments is None:  # a damaged manifest: keep every segment rather than guess
            return
        named |= segments
    for name in os.listdir(root):
        if _SEG.match(name) and name not in named:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def next_number(root: str, current: str | None) -> int:
    """The number of the next generation (and of the segment it writes)."""
    return int(current[4:]) + 1 if current else 1


def commit_generation(root: str, number: int, manifest: dict, tombstones: dict[str, np.ndarray]) -> str:
    """Write generation ``number`` (manifest + tombstone files), make it durable, switch CURRENT to it.

    Args:
        root: the index folder (the caller holds :func:`write_lock`; the segments named are already durable).
        number: the generation's number.
        manifest: settings and ``segments`` [{name, rows, deleted}] (``count`` is computed).
        tombstones: segment name -> sorted deleted local rows (int64), for segments with deletions.

    Returns:
        The generation's name.
    """
    name = gen_name(number)
    tmp = os.path.join(root, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    files: dict[str, int] = {}
    for seg, rows in tombstones.items():
        if len(rows):
            file = f"{seg}.deleted.npy"
            np.save(os.path.join(tmp, file), np.asarray(rows, dtype=np.int64))
            files[file] = os.path.getsize(os.path.join(tmp, file))
            _fsync_path(os.path.join(tmp, file))
    count = sum(s["rows"] - s["deleted"] for s in manifest["segments"])
    manifest = {**manifest, "format": "bgekit-index", "version": FORMAT_VERSION, "generation": number,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "count": count, "files": files}
    with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
    _fsync_path(os.path.join(tmp, "manifest.json"))
    _fsync_path(tmp)
    os.replace(tmp, os.path.join(root, name))
    _fsync_path(root)
    _switch_pointer(root, name)
    collect_garbage(root, name)
    return name
