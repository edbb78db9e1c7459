"""Reading a corpus as a Ray dataset, in pieces of bounded size, in corpus order.

A .jsonl file is cut into byte ranges (``CHUNK_BYTES`` each); one Ray task reads one range, so a large file is
read in parallel and no process holds more than a range of it (Ray's ``read_text`` reads a whole file in one
task). A line belongs to the range holding its first byte. Lines stay bytes until the actors decode them, so
a line that is not UTF-8 is reported as a failing row, not as a failed job. Parquet is read by Ray's reader
(row groups), with only the columns asked for.
"""
from __future__ import annotations

from typing import Any

from bgekit.errors import UsageError

CHUNK_BYTES = 64 << 20


def _filesystem(source: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in source:
        return pafs.FileSystem.from_uri(source)
    return pafs.LocalFileSystem(), source


def read_range(source: str, start: int, end: int) -> list[bytes]:
    """The lines (without their line endings) that begin in bytes [start, end) of ``source``."""
    fs, path = _filesystem(source)
    with fs.open_input_file(path) as f:
        size = f.size()
        begin = max(start - 1, 0)
        f.seek(begin)
        data = f.read(end - begin)
        if start > 0:  # skip the line that began before ``start`` (the byte before it tells)
            cut = data.find(b"\n")
            if cut < 0:
                return []
            data = data[cut + 1:]
        if data and not data.endswith(b"\n") and end < size:  # the last line runs past ``end``: finish it
            tail = []
            while piece := f.read(1 << 16):
                k = piece.find(b"\n")
                tail.append(piece if k < 0 else piece[:k + 1])
                if k >= 0:
                    break
            data += b"".join(tail)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _read_ranges(batch: dict, source: str) -> Any:
    """Ray Data function: a batch of ``(start, end)`` ranges -> a table of their lines, in order."""
    import pyarrow as pa

    lines = [line for s, e in zip(batch["start"], batch["end"]) for line in read_range(source, int(s), int(e))]
    return pa.table({"text": pa.array(lines, pa.binary())})


def jsonl_dataset(ray: Any, source: str, chunk_bytes: int = CHUNK_BYTES) -> Any:
    """A .jsonl file as a dataset of raw lines (column ``text``, bytes), one read task per ``chunk_bytes``."""
    fs, path = _filesystem(source)
    size = fs.get_file_info(path).size
    ranges = [{"start": s, "end": min(s + chunk_bytes, size)} for s in range(0, size, chunk_bytes)]
    ds = ray.data.from_items(ranges or [{"start": 0, "end": 0}], override_num_blocks=max(1, len(ranges)))
    return ds.map_batches(_read_ranges, fn_kwargs={"source": source}, batch_size=1, batch_format="numpy")


def corpus_dataset(ray: Any, source: str, fmt: str, field: str) -> Any:
    """The corpus as a Ray dataset: raw lines for jsonl (parsed in the actors), records for parquet (the text,
    id and title columns only)."""
    if fmt == "jsonl":
        return jsonl_dataset(ray, source)
    names = ray.data.read_parquet(source).schema().names
    if field not in names:
        raise UsageError(f"corpus {source!r} has no column {field!r}; its columns: {', '.join(names)}")
    return ray.data.read_parquet(source).select_columns([c for c in names if c in (field, "id", "_id", "title")])
