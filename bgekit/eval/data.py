"""Retrieval test collections from local folders: the BEIR layout and FlagEmbedding's custom jsonl layout.

BEIR layout (``layout="beir"``)::

    corpus.jsonl        {"_id": "d1", "title": "...", "text": "..."}      (.jsonl.gz works too)
    queries.jsonl       {"_id": "q1", "text": "..."}
    qrels/test.tsv      query-id <TAB> corpus-id <TAB> score              (header line optional)

FlagEmbedding's custom-evaluation layout (``layout="custom"``)::

    corpus.jsonl        {"id": "d1", "title": "...", "text": "..."}       (title optional)
    test_queries.jsonl  {"id": "q1", "text": "..."}
    test_qrels.jsonl    {"qid": "q1", "docid": "d1", "relevance": 1}

Only the queries named in the chosen split's qrels are evaluated. Documents are read as title + " " + text
(stripped), as BEIR and MTEB do. Benchmarks by name (downloaded from the hub) are in :mod:`bgekit.eval.hub`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

from bgekit.errors import InputError
from bgekit.eval.corpus import CorpusFile, LazyColumn, document, field as _field, row_hash
from bgekit.io import iter_jsonl, iter_lines

logger = logging.getLogger(__name__)

LAYOUTS = ("beir", "custom")


@dataclass
class RetrievalData:
    """One split of a retrieval collection: documents, the split's queries and their relevance judgements.

    Attributes:
        name: a label (the folder name by default).
        split: the qrels split, e.g. "test".
        doc_ids, titles, texts: the corpus, in file order (from a plain .jsonl file, titles and texts are
            :class:`~bgekit.eval.corpus.LazyColumn` views reading the file on use: the texts are never all in memory
            unless asked for, e.g. by :meth:`documents`).
        queries: query id -> text, only the queries the split's qrels name, in qrels order.
        qrels: query id -> {doc id: relevance}.
        source: where it came from (a folder, or a hub name).
        excluded: query id -> doc ids removed from its results before scoring (BRIGHT's excluded_ids).
        answers: query id -> answer strings, for answer-based QA recall (MKQA) instead of qrels.
    """

    name: str
    split: str
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str = ""
    excluded: dict[str, set[str]] = field(default_factory=dict)
    answers: dict[str, list[str]] | None = None
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _positions: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if not self.doc_ids:
            raise ValueError(f"{self.source or self.name}: the corpus is empty; there is nothing to retrieve")
        if not (len(self.doc_ids) == len(self.titles) == len(self.texts)):
            raise ValueError("doc_ids, titles and texts must have the same length")
        if not self.queries:
            raise ValueError(f"{self.source or self.name}: no query of split {self.split!r} has both a text and "
                             "judgements (qrels or answers)")
        if not self.qrels and not self.answers:
            raise ValueError(f"{self.source or self.name}: split {self.split!r} has neither qrels nor answers")

    @property
    def corpus_file(self) -> CorpusFile | None:
        """The file the texts are read from, when they are not in memory."""
        return self.texts.corpus if isinstance(self.texts, LazyColumn) else None

    def documents(self) -> list[str]:
        """All texts to encode, in memory: ``(title + " " + text).strip()`` (the text alone without a title).
        :meth:`document_chunks` reads a large corpus a chunk at a time instead."""
        return [document(t, x) for t, x in zip(self.titles, self.texts)]

    def document_chunks(self, size: int):
        """The texts to encode, ``size`` documents at a time in corpus order (read from the file as it goes)."""
        if self.corpus_file is not None:
            yield from (docs for _, docs in self.corpus_file.chunks(size))
            return
        for start in range(0, len(self.doc_ids), size):
            yield [document(t, x) for t, x in zip(self.titles[start:start + size], self.texts[start:start + size])]

    def texts_of(self, doc_ids) -> dict[str, str]:
        """``{doc id: text to encode}`` for a few documents (reranking, answer checks), read by offset from a file."""
        if not self._positions:
            self._positions.update((d, i) for i, d in enumerate(self.doc_ids))
        where = self._positions
        wanted = list(dict.fromkeys(doc_ids))
        unknown = [d for d in wanted if d not in where]
        if unknown:
            raise KeyError(f"document id(s) not in the corpus of {self.name}: {unknown[:5]}")
        rows = [where[d] for d in wanted]
        if self.corpus_file is not None:
            return {d: document(t, x) for d, t, x in self.corpus_file.rows(rows)}
        return {d: document(self.titles[i], self.texts[i]) for d, i in zip(wanted, rows)}

    @property
    def corpus_fingerprint(self) -> str:
        """sha256 of the corpus content (ids, titles, texts): the key for cached corpus embeddings."""
        if "corpus" not in self._fingerprints:
            if self.corpus_file is not None:
                self._fingerprints["corpus"] = self.corpus_file.fingerprint
            else:
                h = hashlib.sha256()
                for row in zip(self.doc_ids, self.titles, self.texts):
                    row_hash(h, *row)
                self._fingerprints["corpus"] = h.hexdigest()
        return self._fingerprints["corpus"]

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that decides the scores: corpus, split, queries and qrels."""
        if "all" not in self._fingerprints:
            payload = json.dumps([self.corpus_fingerprint, self.split, sorted(self.queries.items()),
                                  sorted((q, sorted(d.items())) for q, d in self.qrels.items()),
                                  sorted((q, sorted(d)) for q, d in self.excluded.items()),
                                  sorted((self.answers or {}).items())], ensure_ascii=False)
            self._fingerprints["all"] = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return self._fingerprints["all"]

    def subset(self, n_queries: int, n_docs: int) -> "RetrievalData":
        """A small, deterministic slice for quick checks: the first ``n_queries`` queries, every document they
        judge, then other documents in corpus order up to ``n_docs`` in all (corpus order is kept)."""
        qids = list(self.queries)[:n_queries]
        wanted = {d for q in qids for d in self.qrels.get(q, {})}
        keep, extra = [], n_docs - len(wanted & set(self.doc_ids))
        for i, d in enumerate(self.doc_ids):
            if d in wanted:
                keep.append(i)
            elif extra > 0:
                keep.append(i)
                extra -= 1
        rows = (self.corpus_file.rows(keep) if self.corpus_file is not None else
                [(self.doc_ids[i], self.titles[i], self.texts[i]) for i in keep])
        return RetrievalData(f"{self.name}[:{n_queries}q,{len(keep)}d]", self.split, [r[0] for r in rows],
                             [r[1] for r in rows], [r[2] for r in rows],
                             {q: self.queries[q] for q in qids}, {q: dict(self.qrels[q]) for q in qids if q in self.qrels},
                             self.source, {q: set(self.excluded[q]) for q in qids if q in self.excluded},
                             None if self.answers is None else {q: self.answers[q] for q in qids if q in self.answers})


# ---------------------------------------------------------------- file readers

def read_corpus(path: str, id_key: str) -> tuple[list[str], list[str], list[str]]:
    ids, titles, texts, seen = [], [], [], {}
    for n, obj in iter_jsonl(path):
        doc_id = _field(obj, id_key, path, n)
        if doc_id in seen:
            raise InputError(f"{path}:{n}: duplicate document id {doc_id!r} (first on line {seen[doc_id]})")
        seen[doc_id] = n
        ids.append(doc_id)
        titles.append(_field(obj, "title", path, n, default=""))
        texts.append(_field(obj, "text", path, n))
    if not ids:
        raise InputError(f"{path}: the corpus is empty; there is nothing to retrieve")
    return ids, titles, texts


def read_queries(path: str, id_key: str) -> dict[str, str]:
    return {_field(o, id_key, path, n): _field(o, "text", path, n) for n, o in iter_jsonl(path)}


def read_qrels_tsv(path: str) -> dict[str, dict[str, int]]:
    """BEIR qrels: ``query-id, corpus-id, score`` per line, tab-separated; a header line is skipped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    qrels: dict[str, dict[str, int]] = {}
    lines = (line for _, line in iter_lines(path))  # UTF-8 checked per line; a truncated .gz is named
    for n, row in enumerate(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
        row = [c.strip() for c in row]
        if not row or row == [""]:
            continue
        if n == 1 and row[-1].lower() in ("score", "relevance"):
            continue
        if len(row) == 4:  # TREC style: qid, iteration, docid, relevance
            row = [row[0], row[2], row[3]]
        if len(row) != 3:
            raise InputError(f"{path}:{n}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}")
        try:
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
        except ValueError:
            raise InputError(f"{path}:{n}: relevance score {row[2]!r} is not a number") from None
    return qrels


def read_qrels_jsonl(path: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for n, o in iter_jsonl(path):
        qrels.setdefault(_field(o, "qid", path, n), {})[_field(o, "docid", path, n)] = _field(o, "relevance", path, n, int)
    return qrels


# ---------------------------------------------------------------- layouts

def _first_existing(folder: str, names: tuple[str, ...], what: str) -> str:
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{folder}: no {what} file (looked for {', '.join(names)})")


def detect_layout(folder: str) -> str:
    """"beir" when the folder has ``qrels/``, "custom" when it has ``*_qrels.jsonl`` files."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset folder {folder!r} does not exist")
    if os.path.isdir(os.path.join(folder, "qrels")):
        return "beir"
    if any(f.endswith("_qrels.jsonl") for f in os.listdir(folder)):
        return "custom"
    raise FileNotFoundError(f"{folder}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) nor a custom "
                            "one (corpus.jsonl, SPLIT_queries.jsonl, SPLIT_qrels.jsonl)")


def available_splits(folder: str, layout: str | None = None) -> list[str]:
    layout = layout or detect_layout(folder)
    if layout == "beir":
        names = os.listdir(os.path.join(folder, "qrels")) if os.path.isdir(os.path.join(folder, "qrels")) else []
        return sorted(n.split(".")[0] for n in names if n.endswith((".tsv", ".tsv.gz")))
    return sorted(n[: -len("_qrels.jsonl")] for n in os.listdir(folder) if n.endswith("_qrels.jsonl"))


def _corpus(path: str, id_key: str) -> tuple:
    """(ids, titles, texts): lazy columns over a plain .jsonl file, lists for a gzip one (no reading by offset)."""
    if path.endswith(".gz"):
        return read_corpus(path, id_key)
    corpus = CorpusFile(path, id_key)
    return corpus.ids, LazyColumn(corpus, "title"), LazyColumn(corpus, "text")


def _load_beir(folder: str, split: str) -> tuple:
    corpus = _corpus(_first_existing(folder, ("corpus.jsonl", "corpus.jsonl.gz"), "corpus"), "_id")
    queries_path = _first_existing(folder, ("queries.jsonl", "queries.jsonl.gz"), "queries")
    qrels_path = _first_existing(os.path.join(folder, "qrels"), (f"{split}.tsv", f"{split}.tsv.gz"), f"qrels for split {split!r}")
    return corpus, read_queries(queries_path, "_id"), queries_path, read_qrels_tsv(qrels_path), qrels_path


def _load_custom(folder: str, split: str) -> tuple:
    corpus = _corpus(_first_existing(folder, ("corpus.jsonl", "corpus.jsonl.gz"), "corpus"), "id")
    queries_path = _first_existing(folder, (f"{split}_queries.jsonl",), f"queries for split {split!r}")
    qrels_path = _first_existing(folder, (f"{split}_qrels.jsonl",), f"qrels for split {split!r}")
    return corpus, read_queries(queries_path, "id"), queries_path, read_qrels_jsonl(qrels_path), qrels_path


_LOADERS = {"beir": _load_beir, "custom": _load_custom}


def load_folder(folder: str, split: str = "test", layout: str = "auto", name: str | None = None) -> RetrievalData:
    """Load one split of a local collection.

    Args:
        folder: the dataset folder.
        split: the qrels split ("test", "dev", "train"...).
        layout: "beir", "custom" or "auto" (detect from the files).
        name: a label for reports (default: the folder name).

    Returns:
        A :class:`RetrievalData` holding only the split's queries that have qrels.

    Raises:
        FileNotFoundError: the folder or a file is missing (the split's absence lists the splits present).
        ValueError: a malformed line (file and line named), an empty corpus, or no query with qrels.

    Example:
        >>> data = load_folder("../shared/data/scifact", split="test")
        >>> len(data.doc_ids), len(data.queries)
        (5183, 300)
    """
    layout = detect_layout(folder) if layout == "auto" else layout
    if layout not in _LOADERS:
        raise ValueError(f"unknown layout {layout!r}; valid: auto, {', '.join(_LOADERS)}")
    try:
        (ids, titles, texts), all_queries, queries_path, qrels, qrels_path = _LOADERS[layout](folder, split)
    except FileNotFoundError as e:
        splits = available_splits(folder, layout) if os.path.isdir(folder) else []
        raise FileNotFoundError(f"{e}" + (f"; splits present: {', '.join(splits)}" if splits else "")) from None
    queries, qrels = restrict_to_judged(all_queries, qrels, set(ids), queries_path, qrels_path)
    label = name or os.path.basename(os.path.normpath(folder))
    return RetrievalData(label, split, ids, titles, texts, queries, qrels, source=os.path.abspath(folder))


def restrict_to_judged(all_queries: dict[str, str], qrels: dict[str, dict[str, int]], doc_ids: set[str],
                       queries_path: str = "queries", qrels_path: str = "qrels") -> tuple[dict, dict]:
    """Keep the qrels' queries that have a text; warn (with counts) about unknown query and document ids."""
    unknown = [q for q in qrels if q not in all_queries]
    if unknown:
        logger.warning("%s names %d query id(s) that %s lacks (e.g. %s); they are not evaluated",
                       qrels_path, len(unknown), queries_path, ", ".join(repr(q) for q in unknown[:3]))
    missing_docs = sum(1 for judged in qrels.values() for d in judged if d not in doc_ids)
    if missing_docs:
        logger.warning("%s names %d document id(s) absent from the corpus; they count as relevant but unretrievable",
                       qrels_path, missing_docs)
    kept = {q: judged for q, judged in qrels.items() if q in all_queries}
    return {q: all_queries[q] for q in kept}, kept
