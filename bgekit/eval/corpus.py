"""A collection's corpus read from its .jsonl file when needed: ids and line offsets in memory, texts on disk.

Loading checks every line once (ids, titles, texts: file and line named in errors) and keeps only the ids, the
byte offset of each line and a fingerprint of the content, so a corpus of millions of passages costs tens of
megabytes until its texts are read: a chunk at a time for encoding (:meth:`CorpusFile.chunks`), or a few rows
by offset for reranking (:meth:`CorpusFile.rows`). ``RetrievalData.titles`` / ``.texts`` are
:class:`LazyColumn` views that read the file on use and behave as read-only lists.

A gzip-compressed corpus cannot be read by offset; :func:`bgekit.eval.data.load_folder` reads it into memory.

Example:
    >>> corpus = CorpusFile("../shared/data/scifact/corpus.jsonl", "_id")
    >>> len(corpus), corpus.ids[0]
    (5183, '4983')
    >>> next(corpus.chunks(2))[1][0][:40]
    'Microstructural development of human new'
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterator, Sequence

import numpy as np

from bgekit.errors import InputError
from bgekit.io import iter_jsonl, parse_json_line


def field(obj: dict, key: str, path: str, n: int, kind: type = str, default: Any = ...) -> Any:
    """``obj[key]`` checked: present (unless a default is given) and of type ``kind``; numeric ids become strings."""
    value = obj.get(key, default)
    if value is ...:
        raise InputError(f"{path}:{n}: missing field {key!r} (fields present: {sorted(obj)})")
    if value is None and default is not ...:
        return default
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("_id", "id", "qid", "docid"):
        return str(value)  # numeric ids are ids all the same
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{path}:{n}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def document(title: str, text: str) -> str:
    """The text a retriever encodes: ``(title + " " + text).strip()`` (the text alone without a title), as BEIR."""
    return f"{title} {text}".strip() if title else text.strip()


def row_hash(h: Any, doc_id: str, title: str, text: str) -> None:
    """Feed one document into a corpus fingerprint (the same bytes however the corpus is held)."""
    h.update(json.dumps([doc_id, title, text], ensure_ascii=False).encode("utf-8") + b"\n")


class CorpusFile:
    """A checked .jsonl corpus whose texts stay in the file.

    Args:
        path: a plain (not gzip) .jsonl file, one document per line.
        id_key: the id field ("_id" in BEIR, "id" in FlagEmbedding's custom layout).

    Raises:
        InputError: a bad line (file and line named), a repeated id, or an empty corpus.
    """

    def __init__(self, path: str, id_key: str):
        if path.endswith(".gz"):
            raise ValueError(f"{path}: a gzip file cannot be read by offset; read it whole (bgekit.eval.data.read_corpus)")
        self.path, self.id_key = path, id_key
        ids, offsets, lines, seen = [], [], [], {}
        h = hashlib.sha256()
        for n, obj, offset in iter_jsonl(path, offsets=True):
            doc_id, title, text = self._parse(obj, n)
            if doc_id in seen:
                raise InputError(f"{path}:{n}: duplicate document id {doc_id!r} (first on line {seen[doc_id]})")
            seen[doc_id] = n
            ids.append(doc_id), offsets.append(offset), lines.append(n)
            row_hash(h, doc_id, title, text)
        if not ids:
            raise InputError(f"{path}: the corpus is empty; there is nothing to retrieve")
        self.ids = ids
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)
        self.fingerprint = h.hexdigest()
        self._stat = self._signature()

    def _parse(self, obj: dict, n: int) -> tuple[str, str, str]:
        return (field(obj, self.id_key, self.path, n), field(obj, "title", self.path, n, default=""),
                field(obj, "text", self.path, n))

    def _signature(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_size, st.st_mtime_ns

    def _check_unchanged(self) -> None:
        if self._signature() != self._stat:
            raise InputError(f"{self.path} changed after it was loaded; load the collection again")

    def __len__(self) -> int:
        return len(self.ids)

    def iter_rows(self) -> Iterator[tuple[str, str, str]]:
        """``(id, title, text)`` for every document, in file order, read as the iteration goes."""
        self._check_unchanged()
        for n, obj in iter_jsonl(self.path):
            yield self._parse(obj, n)

    def chunks(self, size: int) -> Iterator[tuple[list[str], list[str]]]:
        """``(ids, documents)`` lists of at most ``size`` documents, in file order (documents as encoded)."""
        ids: list[str] = []
        docs: list[str] = []
        for doc_id, title, text in self.iter_rows():
            ids.append(doc_id), docs.append(document(title, text))
            if len(ids) == size:
                yield ids, docs
                ids, docs = [], []
        if ids:
            yield ids, docs

    def rows(self, positions: Sequence[int]) -> list[tuple[str, str, str]]:
        """``(id, title, text)`` of the documents at ``positions`` (corpus order numbers), read by offset."""
        self._check_unchanged()
        positions = [int(p) for p in positions]
        out: dict[int, tuple[str, str, str]] = {}
        with open(self.path, "rb") as f:
            for p in sorted(set(positions), key=lambda p: self.offsets[p]):
                f.seek(int(self.offsets[p]))
                line = f.readline().decode("utf-8-sig" if self.offsets[p] == 0 else "utf-8")
                out[p] = self._parse(parse_json_line(line, self.path, int(self.lines[p])), int(self.lines[p]))
        return [out[p] for p in positions]


class LazyColumn(Sequence):
    """One field of a :class:`CorpusFile` ("title" or "text") as a read-only list that reads the file on use."""

    _INDEX = {"title": 1, "text": 2}

    def __init__(self, corpus: CorpusFile, name: str):
        if name not in self._INDEX:
            raise ValueError(f"unknown column {name!r}; valid: {', '.join(self._INDEX)}")
        self.corpus, self.name, self._i = corpus, name, self._INDEX[name]

    def __len__(self) -> int:
        return len(self.corpus)

    def __iter__(self) -> Iterator[str]:
        return (row[self._i] for row in self.corpus.iter_rows())

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [row[self._i] for row in self.corpus.rows(range(len(self))[item])]
        n = len(self)
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{self.name} indices must be integers or slices, not {type(item).__name__}")
        if not -n <= item < n:
            raise IndexError(f"{self.name} index {item} out of range for {n} documents")
        return self.corpus.rows([int(item) % n])[0][self._i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, LazyColumn)) and len(other) == len(self) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"LazyColumn({self.name!r}, {len(self)} documents in {self.corpus.path})"
