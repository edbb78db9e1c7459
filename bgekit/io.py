"""Atomic file output (a temporary file in the same folder, renamed over the target, with the permissions a
user expects) and the one reader of text and jsonl inputs (file and line named in every error)."""
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
    if os.path.isdir(path):
        from bgekit.errors import OutputError

        raise OutputError(f"output {path!r} is a folder; give a file path")
    mode_bits = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode_bits)  # mkstemp makes 0600; keep a replaced file's mode, else follow the umask
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def file_mode(path: str) -> int:
    """Permission bits for writing ``path``: the existing file's, else 0666 less the process umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save_npy(path: str, array) -> None:
    """np.save to ``path`` atomically (no ``.npy`` suffix is appended)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.save(f, array)


def check_input_file(path: str, what: str = "input file") -> None:
    """InputFileError unless ``path`` is an existing, readable file (a folder is named as a folder)."""
    from bgekit.errors import InputFileError

    if os.path.isdir(path):
        raise InputFileError(f"{what} {path!r} is a folder; expected a file")
    if not os.path.exists(path):
        raise InputFileError(f"{what} {path!r} does not exist")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{what} {path!r} is not readable (permission denied)")


def iter_lines(path: str, what: str = "input file", offsets: bool = False) -> Iterator[tuple]:
    """``(line_number, text)`` for every line of a UTF-8 text file (``.gz`` read through gzip), without the
    line ending; a UTF-8 byte-order mark is dropped. Lines count from 1. With ``offsets``:
    ``(line_number, text, byte offset of the line)`` (in the decompressed stream for ``.gz``).

    Raises:
        InputFileError: no such file, or a folder.
        InputError: bytes that are not UTF-8 (file, line and column named), a truncated or corrupt .gz file.
    """
    import gzip
    import zlib

    from bgekit.errors import InputError

    check_input_file(path, what)
    n = position = 0
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{n}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                     "save the file as UTF-8") from None
                line = line.rstrip("\r\n") if line.endswith("\n") else line
                yield (n, line, position) if offsets else (n, line)
                position += len(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"{path}: truncated or corrupt gzip file after line {n} ({e})") from None


def iter_jsonl(path: str, objects_only: bool = True, offsets: bool = False) -> Iterator[tuple]:
    """``(line_number, value)`` for each non-blank line of a .jsonl (or .jsonl.gz) file (lines count from 1);
    with ``offsets``, ``(line_number, value, byte offset of the line)``.

    The one jsonl reader every input goes through, so a bad line reads the same everywhere. A UTF-8
    byte-order mark is accepted, as for .txt files.

    Raises:
        InputFileError: no such file, or a folder.
        InputError: a line that is not JSON, or (with ``objects_only``) not a JSON object, or not UTF-8; the
            message starts with the file and line.
    """
    for n, line, position in iter_lines(path, offsets=True):
        if not line.strip():
            continue
        value = parse_json_line(line, path, n, objects_only)
        yield (n, value, position) if offsets else (n, value)


def parse_json_line(line: str, path: str, n: int, objects_only: bool = True) -> Any:
    """One jsonl line's value; errors name the file and line (shared by :func:`iter_jsonl` and random access)."""
    import json

    from bgekit.errors import InputError

    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
    if objects_only and not isinstance(value, dict):
        raise InputError(f"{path}:{n}: expected a JSON object, got {type(value).__name__}")
    return value
