"""Atomic file output: write to a temporary file in the same folder, then rename over the target."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "out.txt")
        >>> with atomic_open(p) as f:
        ...     _ = f.write("done")
        >>> open(p).read()
        'done'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save_npy(path: str, array) -> None:
    """np.save to ``path`` atomically (no ``.npy`` suffix is appended)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.save(f, array)


def iter_jsonl(path: str, objects_only: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line_number, value)`` for each non-blank line of a .jsonl (or .jsonl.gz) file (lines count from 1).

    The one jsonl reader every input goes through, so a bad line reads the same everywhere.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not JSON, or (with ``objects_only``) not a JSON object; the message starts
            with the file and line.
    """
    import gzip
    import json

    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist")
    opener = gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")
    with opener as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
            if objects_only and not isinstance(value, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(value).__name__}")
            yield n, value
