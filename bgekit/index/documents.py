"""Documents of a persisted index: reading a corpus, and the SQLite table that holds ids, texts and metadata.

A corpus is a .jsonl file, one document per line: ``{"id": ..., "text": ..., "title": ..., "metadata": {...}}``.
``_id`` (BEIR) is accepted for ``id``; an optional ``title`` is prepended to the text for encoding (BEIR
convention: ``title + " " + text``); every other field joins ``metadata``, which the exact-value filter reads.

Example:
    >>> docs = as_documents([{"id": "a", "text": "pandas eat bamboo", "lang": "en"}])
    >>> docs.ids, docs.metadata
    (['a'], [{'lang': 'en'}])
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from bgekit.io import iter_jsonl

SCHEMA = ("CREATE TABLE docs (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, "
          "title TEXT, metadata TEXT NOT NULL)")
_RESERVED = ("id", "_id", "text", "title", "metadata")
_FILTER_TYPES = {str: ("text",), bool: None, int: ("integer", "real"), float: ("integer", "real")}


@dataclass
class Documents:
    """Documents to index: parallel lists (ids are strings, unique)."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    titles: list[str | None] = field(default_factory=list)
    metadata: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def for_encoding(self) -> list[str]:
        """The texts the model encodes: ``title + " " + text`` where a title is present."""
        return [f"{t} {x}".strip() if t else x for t, x in zip(self.titles, self.texts)]

    def images(self) -> list[str | None]:
        """Each document's image path (``metadata["image"]``, documents of a Visualized-BGE index), or None."""
        return [m.get("image") if isinstance(m.get("image"), str) else None for m in self.metadata]

    def slice(self, start: int, end: int) -> "Documents":
        return Documents(self.ids[start:end], self.texts[start:end], self.titles[start:end], self.metadata[start:end])


def _document(obj: Any, where: str, images: str | None = None) -> tuple[str, str, str | None, dict]:
    """One document; with ``images`` (the folder image paths are relative to) an ``image`` path may stand in
    for the text: it is made absolute, must be a file, and is kept as ``metadata["image"]``."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a document must be an object with 'id' and 'text', got {type(obj).__name__}")
    doc_id = obj.get("id", obj.get("_id"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
        raise ValueError(f"{where}: 'id' must be a non-empty string or an integer, got {doc_id!r:.60}")
    text, title = obj.get("text"), obj.get("title")
    if images is not None and "image" in obj:
        obj = {**obj, "image": _image_path(obj["image"], images, where)}
        text = "" if text is None else text
    if not isinstance(text, str):
        raise ValueError(f"{where}: 'text' must be a string, got {type(text).__name__}"
                         + (" (or give an 'image' path)" if images is not None else ""))
    if title is not None and not isinstance(title, str):
        raise ValueError(f"{where}: 'title' must be a string, got {type(title).__name__}")
    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: 'metadata' must be an object, got {type(meta).__name__}")
    meta = {**{k: v for k, v in obj.items() if k not in _RESERVED}, **meta}
    return str(doc_id), text, title or None, meta


def _image_path(value: Any, folder: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: 'image' must be a non-empty path string, got {value!r:.60}")
    path = os.path.abspath(os.path.join(folder, value))
    if not os.path.isfile(path):
        raise ValueError(f"{where}: image file {value!r} does not exist ({path})")
    return path


def as_documents(items: Iterable[Any], source: str = "documents", images: str | None = None) -> Documents:
    """Validate documents given as dicts (``id``/``_id``, ``text``, optional ``title`` and ``metadata``).

    Args:
        images: for a Visualized-BGE index, the folder relative image paths start from: a document may then
            have an ``image`` path, with or without a text.

    Raises:
        ValueError: a malformed document or a repeated id (naming its position).
    """
    if isinstance(items, Documents):
        items = [{"id": i, "text": x, "title": t, "metadata": m}
                 for i, x, t, m in zip(items.ids, items.texts, items.titles, items.metadata)]
    docs, seen = Documents(), {}
    for n, obj in enumerate(items):
        doc_id, text, title, meta = _document(obj, f"{source}[{n}]", images)
        if doc_id in seen:
            raise ValueError(f"{source}[{n}]: id {doc_id!r} repeats {source}[{seen[doc_id]}]")
        seen[doc_id] = n
        docs.ids.append(doc_id), docs.texts.append(text), docs.titles.append(title), docs.metadata.append(meta)
    return docs


def _corpus_lines(path: str):
    from bgekit.errors import InputError
    from bgekit.io import check_input_file

    check_input_file(path, "corpus file")
    if not path.endswith((".jsonl", ".jsonl.gz")):
        raise InputError(f"corpus {path!r}: expected a .jsonl file with one {{'id', 'text'}} object per line")
    return iter_jsonl(path, objects_only=False)


def read_corpus(path: str, images: bool = False) -> Documents:
    """Read a .jsonl corpus (see module docstring); errors name the file and line.

    ``images``: documents may have an ``image`` path relative to the file's folder (a Visualized-BGE index).
    """
    from bgekit.errors import InputError

    objs, lines = [], []
    for n, obj in _corpus_lines(path):
        objs.append(obj)
        lines.append(n)
    try:
        return as_documents(objs, source="line", images=_folder(path) if images else None)
    except ValueError as e:  # "line[3]: ..." -> "file:line: ..."
        msg = str(e)
        pos = int(msg[msg.index("[") + 1: msg.index("]")])
        raise InputError(f"{path}:{lines[pos]}{msg[msg.index(']') + 1:]}") from None


class CorpusStream:
    """A .jsonl corpus read in chunks of ``chunk`` documents: the texts are never all in memory.

    Creating one checks the whole file first (every line a valid document, no repeated id; errors name the file
    and line), holding only the ids, so a bad line stops a build or an add before any encoding. Iterating yields
    :class:`Documents` chunks; ``len()`` is the number of documents; ``ids`` lists them in file order (what an add
    checks against the index before encoding). A file changed since the check is an error when read.
    """

    def __init__(self, path: str, chunk: int = 8192, images: bool = False):
        from bgekit.errors import InputError

        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive number of documents, got {chunk!r}")
        self.path, self.chunk, seen = path, chunk, {}
        self.images = _folder(path) if images else None
        for n, obj in _corpus_lines(path):
            try:
                doc_id = _document(obj, "", self.images)[0]
            except ValueError as e:
                raise InputError(f"{path}:{n}{e}") from None
            if doc_id in seen:
                raise InputError(f"{path}:{n}: id {doc_id!r} repeats line {seen[doc_id]}")
            seen[doc_id] = n
        self.ids: list[str] = list(seen)
        self.count = len(self.ids)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        docs, row = Documents(), 0
        for n, obj in _corpus_lines(self.path):
            doc_id, text, title, meta = _document(obj, f"{self.path}:{n}", self.images)
            if row >= self.count or doc_id != self.ids[row]:
                self._changed(f"line {n} has id {doc_id!r} where the check saw "
                              + (repr(self.ids[row]) if row < self.count else "the end of the file"))
            docs.ids.append(doc_id), docs.texts.append(text), docs.titles.append(title), docs.metadata.append(meta)
            row += 1
            if len(docs) == self.chunk:
                yield docs
                docs = Documents()
        if row != self.count:
            self._changed(f"it ends after {row} documents where the check counted {self.count}")
        if len(docs):
            yield docs

    def _changed(self, detail: str) -> None:
        from bgekit.errors import InputError

        raise InputError(f"{self.path}: the file changed after it was checked ({detail}); write the corpus to a "
                         "new file and run again")


def stream_corpus(path: str, chunk: int = 8192, images: bool = False) -> CorpusStream:
    """Check a .jsonl corpus and return it as a :class:`CorpusStream` for :func:`~bgekit.index.store.build_index`
    (``images``: see :func:`read_corpus`)."""
    return CorpusStream(path, chunk, images)


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


# ---------------------------------------------------------------- the SQLite table

def _uri(path: str, query: str = "") -> str:
    return "file:" + os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23") + query


def open_readonly(path: str, count: int | None = None, full_check: bool = False) -> sqlite3.Connection:
    """A generation's table never changes once written: open it immutable (no locks, no journal).

    The table is probed (``count`` rows, when given); ``full_check`` also runs SQLite's integrity check.

    Raises:
        InputError: a damaged or foreign docs.sqlite (the file named).
    """
    from bgekit.errors import InputError

    db = sqlite3.connect(_uri(path, "?mode=ro&immutable=1"), uri=True, check_same_thread=False)
    try:
        rows = db.execute("SELECT count(*) FROM docs").fetchone()[0]
        problems = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()] if full_check else ["ok"]
    except sqlite3.DatabaseError as e:
        db.close()
        raise InputError(f"{path}: the index's document table is damaged ({e}); rebuild the index or restore "
                         "this folder from a copy") from None
    if problems != ["ok"] or (count is not None and rows != count):
        db.close()
        detail = "; ".join(problems[:3]) if problems != ["ok"] else f"{rows} rows where the manifest records {count}"
        raise InputError(f"{path}: the index's document table is damaged ({detail}); rebuild the index")
    return db


def create_table(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(_uri(path), uri=True)
    db.execute("PRAGMA journal_mode=OFF")  # the whole file is new: a crash discards it, no journal needed
    db.execute(SCHEMA)
    return db


def copy_rows(db: sqlite3.Connection, old_path: str, drop_rows: np.ndarray, start: int = 0) -> int:
    """Copy the old table's rows except ``drop_rows``, renumbered start, start+1, ... in order. Returns how many."""
    before = int(db.execute("SELECT COUNT(*) FROM docs").fetchone()[0])
    db.execute("ATTACH DATABASE ? AS old", (_uri(old_path, "?mode=ro&immutable=1"),))
    db.execute("CREATE TEMP TABLE IF NOT EXISTS gone (row INTEGER PRIMARY KEY)")
    db.execute("DELETE FROM gone")
    db.executemany("INSERT INTO gone VALUES (?)", ((int(r),) for r in drop_rows))
    db.execute("INSERT INTO docs SELECT ROW_NUMBER() OVER (ORDER BY row) - 1 + ?, id, text, title, metadata "
               "FROM old.docs WHERE row NOT IN (SELECT row FROM gone)", (int(start),))
    db.commit()
    db.execute("DETACH DATABASE old")
    return int(db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]) - before


def insert_rows(db: sqlite3.Connection, start: int, docs: Documents) -> None:
    rows = ((start + i, d, x, t, json.dumps(m, ensure_ascii=False))
            for i, (d, x, t, m) in enumerate(zip(docs.ids, docs.texts, docs.titles, docs.metadata)))
    try:
        db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)
    except TypeError as e:
        raise ValueError(f"document metadata must be JSON-serialisable: {e}") from None
    db.commit()


def rows_of_ids(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """id -> row for the ids the table holds (absent ids are left out)."""
    out: dict[str, int] = {}
    ids = [str(i) for i in ids]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        q = f"SELECT id, row FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
        out.update(db.execute(q, chunk).fetchall())
    return out


def fetch(db: sqlite3.Connection, rows: Sequence[int]) -> dict[int, tuple[str, str, str | None, dict]]:
    """row -> (id, text, title, metadata) for the given rows."""
    out = {}
    rows = sorted({int(r) for r in rows})
    for start in range(0, len(rows), 500):
        chunk = rows[start:start + 500]
        q = f"SELECT row, id, text, title, metadata FROM docs WHERE row IN ({','.join('?' * len(chunk))})"
        for row, doc_id, text, title, meta in db.execute(q, chunk):
            out[row] = (doc_id, text, title, json.loads(meta))
    return out


def filter_sql(where: dict) -> tuple[str, list]:
    """An exact-value metadata filter as SQL: every field must match; a list value means any of its values.

    Values compare with their JSON type: "1" does not match 1, True does not match 1, None matches null.
    """
    if not isinstance(where, dict) or not where:
        raise ValueError(f"filter must be a non-empty object field -> value, got {where!r:.80}")
    clauses, params = [], []
    for name, value in where.items():
        if not isinstance(name, str) or not name or '"' in name:
            raise ValueError(f"filter field names must be non-empty strings without '\"', got {name!r}")
        path = f'$."{name}"'
        options = value if isinstance(value, list) else [value]
        if not options:
            raise ValueError(f"filter[{name!r}]: an empty list matches nothing")
        ors = []
        for v in options:
            if v is None:
                ors.append("json_type(metadata, ?) = 'null'"), params.append(path)
            elif isinstance(v, bool):
                ors.append("json_type(metadata, ?) = ?"), params.extend([path, "true" if v else "false"])
            elif type(v) in _FILTER_TYPES:
                types = ",".join(f"'{t}'" for t in _FILTER_TYPES[type(v)])
                ors.append(f"(json_type(metadata, ?) IN ({types}) AND json_extract(metadata, ?) = ?)")
                params.extend([path, path, v])
            else:
                raise ValueError(f"filter[{name!r}]: values must be strings, numbers, booleans or null "
                                 f"(or a list of them), got {type(v).__name__}")
        clauses.append("(" + " OR ".join(ors) + ")")
    return " AND ".join(clauses), params


def filter_rows(db: sqlite3.Connection, where: dict) -> np.ndarray:
    """Rows (ascending) whose metadata matches the exact-value filter ``where`` (see :func:`filter_sql`)."""
    sql, params = filter_sql(where)
    rows = [r for (r,) in db.execute(f"SELECT row FROM docs WHERE {sql} ORDER BY row", params)]
    return np.asarray(rows, dtype=np.int64)
