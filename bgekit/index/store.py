"""A persisted hybrid index: dense (FAISS), sparse (CSR), optional ColBERT vectors and the documents, in a folder.

The documents live in immutable segments. Adding writes the new documents as a new segment, deleting records
tombstones, and a small merge policy keeps the segments few (see :mod:`bgekit.index.changes`); ``compact``
merges everything into one segment. Every change ends by switching a pointer file atomically to a new
generation (see :mod:`bgekit.index.generation`), so a process killed at any moment leaves the previous index
readable and complete. Searches read every segment of the live generation (:mod:`bgekit.index.layout`). The index records the model it was built with and refuses any other (see
:mod:`bgekit.index.model_info`).

Example:
    >>> from bgekit import load_embedder                                            # doctest: +SKIP
    >>> model = load_embedder("BAAI/bge-m3")                                         # doctest: +SKIP
    >>> store = build_index("my-index", model, read_corpus("docs.jsonl"))            # doctest: +SKIP
    >>> store.add([{"id": "n1", "text": "a new document"}], model)                   # doctest: +SKIP
    >>> store.delete(["n1"])                                                          # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Iterable, Sequence

import numpy as np

from bgekit.errors import UsageError
from bgekit.index import documents as D
from bgekit.index import generation as G
from bgekit.index import integrity as I
from bgekit.index.layout import ColbertView, DenseView, Layout, RowView, SparseView
from bgekit.index.model_info import ModelInfo
from bgekit.index.segment import Segment, SegmentWriter
from bgekit.index.vectors import OUTPUTS, Vectors, _check_outputs, _check_vectors, encode  # noqa: F401 (re-exported)

ENCODE_CHUNK = 2048  # documents encoded (and written) per step
FILTER_CACHE = 64    # metadata filters whose matching rows are kept per open generation


class IndexStore:
    """An open index folder: the live generation's segments, their tombstones, and views over all of them.

    Open one with :func:`open_index`; create one with :func:`build_index`. ``add``, ``delete`` and ``compact``
    commit a new generation and reopen it (segments already open are reused). :meth:`reload` picks up changes
    made by another process. Rows are numbered 0..count-1 over the live documents, in insertion order.

    Attributes:
        path, generation, manifest, model_info (:class:`ModelInfo`), outputs, count, segments (the open
        :class:`~bgekit.index.segment.Segment` objects), layout (:class:`~bgekit.index.layout.Layout`),
        dense (search / score over all segments), dense_vectors ((N, D): a memory map when there is one segment
        without deletions, else a gathering view), sparse (or None), colbert ((T, C) float16) and
        colbert_offsets ((N + 1,)) or None.
    """

    def __init__(self, path: str, search_params: dict | None = None):
        self.path = os.path.abspath(path)
        self._search_params = search_params
        self._lock = threading.Lock()
        self._open: dict[str, Segment] = {}
        self.generation: str | None = None
        self.reload()

    # ---------------------------------------------------------------- reading
    def reload(self) -> bool:
        """Open the live generation if it changed since the last load. Returns True if it did."""
        name = G.read_pointer(self.path)
        if name is None:
            raise FileNotFoundError(f"{self.path!r} is not a bgekit index (no {G.POINTER} file); build one first")
        if name == self.generation:
            return False
        self._load(os.path.join(self.path, name))
        self.generation = name
        return True

    def _segment(self, folder: str, meta: dict | None = None) -> Segment:
        seg = self._open.get(folder)
        if seg is None:
            settings = self.manifest["dense"]
            params = settings.get("search_params") if self._search_params is None else self._search_params
            seg = Segment(folder, self.outputs, self.model_info.dim, self.model_info.colbert_dim, settings, params, meta)
        return seg

    def _load(self, folder: str) -> None:
        manifest = I.read_manifest(folder)
        self.manifest, self.folder = manifest, folder
        self.model_info = ModelInfo.from_json(manifest["model"])
        self.outputs = tuple(manifest["outputs"])
        parts = []
        if manifest["version"] == 1:  # a complete generation: one segment, written by bgekit before segments
            meta = {"rows": manifest["count"], "sparse_vocab": manifest.get("sparse_vocab"), "files": manifest["files"]}
            seg = self._segment(folder, meta)
            seg.legacy = True
            parts.append((seg, np.zeros(0, np.int64)))
        for entry in manifest.get("segments", []):
            deleted = np.zeros(0, np.int64)
            if entry["deleted"]:
                deleted = np.load(os.path.join(folder, f"{entry['name']}.deleted.npy"))
            parts.append((self._segment(os.path.join(self.path, entry["name"])), deleted))
            if len(deleted) != entry["deleted"] or parts[-1][0].rows != entry["rows"]:
                raise I.InputError(f"{folder}: segment {entry['name']} does not match the manifest; the index is damaged")
        self._open = {seg.folder: seg for seg, _ in parts}
        self.segments = [seg for seg, _ in parts]
        self.layout = Layout(parts, self.model_info.dim)
        self.count = self.layout.count
        self.deleted = sum(len(d) for _, d in parts)
        one = len(parts) == 1 and not len(parts[0][1])
        self.dense_vectors = parts[0][0].dense if one else RowView(self.layout)
        self.dense = DenseView(self.layout, self.dense_vectors, manifest["dense"]["factory"], manifest["dense"]["metric"])
        self.sparse = SparseView(self.layout) if "sparse" in self.outputs else None
        self.colbert = self.colbert_offsets = None
        if "colbert" in self.outputs:
            self.colbert_offsets = parts[0][0].colbert_offsets if one else self._colbert_offsets()
            self.colbert = parts[0][0].colbert if one else ColbertView(self.colbert_offsets, self.colbert_of,
                                                                        self.model_info.colbert_dim)
        self._filters: dict[str, np.ndarray] = {}

    def _colbert_offsets(self) -> np.ndarray:
        lengths = [np.delete(np.diff(seg.colbert_offsets), d) for seg, d in self.layout.parts]
        return np.r_[0, np.cumsum(np.concatenate(lengths or [np.zeros(0, np.int64)]))].astype(np.int64)

    def colbert_of(self, row: int) -> np.ndarray:
        """The ColBERT vectors (n, C) float16 of one row."""
        (part, _, local), = self.layout.split([row])
        seg = self.layout.parts[part][0]
        return seg.colbert[seg.colbert_offsets[local[0]]:seg.colbert_offsets[local[0] + 1]]

    def check(self) -> None:
        """Verify the live generation in full (file sizes, and SQLite's integrity check of every document table).

        Raises:
            InputError: what is damaged, naming the file.
        """
        I.read_manifest(self.folder)
        for seg in self.segments:
            if not getattr(seg, "legacy", False):
                I.read_segment(seg.folder)
            D.open_readonly(seg.docs_path, count=seg.rows, full_check=True).close()

    def disk_bytes(self) -> int:
        """Bytes of the live generation's files and of every segment it names."""
        sizes = [sum(self.manifest["files"].values())] + [sum(I.read_segment(seg.folder)["files"].values())
                                                          for seg in self.segments if not getattr(seg, "legacy", False)]
        return int(sum(sizes))

    def documents(self, rows: Sequence[int]) -> dict[int, tuple[str, str, str | None, dict]]:
        """row -> (id, text, title, metadata)."""
        rows = np.fromiter((int(r) for r in rows), dtype=np.int64)
        out = {}
        with self._lock:
            for part, pos, local in self.layout.split(rows):
                seg = self.layout.parts[part][0]
                with I.damage_named(seg.docs_path):
                    found = D.fetch(seg.db, local)
                out.update((int(rows[p]), found[int(r)]) for p, r in zip(pos, local))
        return out

    def rows(self, ids: Sequence[str]) -> dict[str, int]:
        """id -> row for the ids present."""
        out: dict[str, int] = {}
        with self._lock:
            for part, (seg, _) in enumerate(self.layout.parts):
                with I.damage_named(seg.docs_path):
                    found = D.rows_of_ids(seg.db, ids)
                if found:
                    local = np.fromiter(found.values(), dtype=np.int64, count=len(found))
                    live = self.layout.live_locals(part, local)
                    out.update(zip(np.asarray(list(found))[live].tolist(), self.layout.logical(part, local[live]).tolist()))
        return out

    def filter_rows(self, where: dict) -> np.ndarray:
        """Rows whose metadata matches an exact-value filter (see :func:`bgekit.index.documents.filter_sql`).

        Results are cached per generation (a generation never changes), up to FILTER_CACHE filters.
        """
        key = json.dumps(where, sort_keys=True, default=repr)
        with self._lock:
            rows = self._filters.get(key)
            if rows is None:
                found = []
                for part, (seg, _) in enumerate(self.layout.parts):
                    with I.damage_named(seg.docs_path):
                        local = D.filter_rows(seg.db, where)
                    found.append(self.layout.logical(part, local[self.layout.live_locals(part, local)]))
                rows = np.concatenate(found) if found else np.zeros(0, np.int64)
                if len(self._filters) >= FILTER_CACHE:
                    self._filters.pop(next(iter(self._filters)))
                self._filters[key] = rows
            return rows

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"IndexStore({self.path!r}, {self.generation}, count={self.count}, segments={len(self.segments)}, "
                f"outputs={list(self.outputs)}, model={self.model_info.name!r})")

    # ---------------------------------------------------------------- changing
    def add(self, documents: Any, model: Any = None, *, vectors: Any = None, upsert: bool = False,
            batch_size: int | None = None, show_progress: bool = True) -> "IndexStore":
        """Add documents (encoded with ``model``, or given as ``vectors``) as a new segment, in one new generation.

        Args:
            documents: dicts with ``id``, ``text`` (optional ``title``, ``metadata``), :class:`Documents`, or a
                :class:`~bgekit.index.documents.CorpusStream` (``stream_corpus("new.jsonl")``: its ids are checked
                against the index before anything is encoded, then it is read, encoded and written a chunk at a
                time, so memory stays flat however many documents are added).
            model: the index's model (checked); needed unless ``vectors`` are given.
            vectors: precomputed vectors holding every output the index stores: :class:`Vectors` for documents in
                memory, or a row source with ``take(ids)`` for a streamed corpus (see :func:`build_index`).
            upsert: replace documents whose ids exist (else those ids are an error); the old rows become tombstones.
            batch_size, show_progress: encoding settings.

        Returns:
            self, reopened on the new generation.

        Raises:
            UsageError: ids already in the index without ``upsert`` (before any encoding).
        """
        from bgekit.index import changes

        chunks, ids, vectors = _sources(documents, vectors, self.outputs, self.model_info)
        if vectors is None:
            if model is None:
                raise ValueError("add needs the index's model to encode documents, or precomputed vectors")
            self.model_info.check(model, use="passage")
        with G.write_lock(self.path):
            self.reload()
            existing = self.check_new(ids, upsert)
            fill = lambda writer: _fill(writer, chunks, len(ids), model, vectors, self.outputs,  # noqa: E731
                                        self.model_info, batch_size, show_progress)
            changes.apply(self, drop=self._locals(existing.values()), add=fill, n_new=len(ids))
            self.reload()
        return self

    def check_new(self, ids: Sequence[str], upsert: bool = False) -> dict[str, int]:
        """id -> row of those of ``ids`` already in the index (what an upsert replaces).

        Raises:
            UsageError: some are, and ``upsert`` is off (the first few named).
        """
        existing = self.rows(ids)
        if existing and not upsert:
            shown = ", ".join(repr(i) for i in list(existing)[:5])
            raise UsageError(f"{len(existing)} document id(s) already in the index ({shown}); replace them with "
                             "upsert=True (bgekit index add --upsert), or delete them first")
        return existing

    def delete(self, ids: Sequence[str], missing: str = "error") -> "IndexStore":
        """Delete documents by id (tombstones; small segments are rewritten) in one new generation.

        Args:
            ids: document ids.
            missing: "error" (an absent id raises ValueError) or "ignore".

        Returns:
            self, reopened on the new generation.
        """
        from bgekit.index import changes

        if missing not in ("error", "ignore"):
            raise ValueError(f"unknown missing={missing!r}; valid: error, ignore")
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
            raise TypeError(f"ids must be a list of document ids, got {type(ids).__name__}")
        with G.write_lock(self.path):
            self.reload()
            found = self.rows([str(i) for i in ids])
            absent = [str(i) for i in ids if str(i) not in found]
            if absent and missing == "error":
                raise UsageError(f"{len(absent)} id(s) not in the index: {', '.join(map(repr, absent[:10]))} "
                                 "(missing='ignore', or bgekit index delete --ignore-missing, skips them)")
            changes.apply(self, drop=self._locals(found.values()))
            self.reload()
        return self

    def compact(self) -> "IndexStore":
        """Merge every segment into one without the deleted rows (approximate FAISS indexes are trained again).

        Returns:
            self, reopened on the new generation.
        """
        from bgekit.index import changes

        with G.write_lock(self.path):
            self.reload()
            if self.compacted:
                return self  # nothing to merge, nothing to drop: no new generation
            changes.apply(self, compact=True)
            self.reload()
        return self

    @property
    def compacted(self) -> bool:
        """One segment in the current format and no deleted rows: :meth:`compact` would write the same rows."""
        return len(self.segments) == 1 and not self.deleted and not getattr(self.segments[0], "legacy", False)

    def _locals(self, rows: Iterable[int]) -> dict[int, np.ndarray]:
        """Logical rows -> {part: local rows}."""
        rows = np.fromiter(rows, dtype=np.int64)
        return {part: local for part, _, local in self.layout.split(rows)}


def open_index(path: str, search_params: dict | None = None) -> IndexStore:
    """Open an index folder on its live generation.

    Args:
        path: the index folder.
        search_params: FAISS search parameters overriding the recorded ones, e.g. ``{"efSearch": 128}``.
    """
    return IndexStore(path, search_params=search_params)


def build_index(path: str, model: Any, documents: Any, *, outputs: Sequence[str] | None = None, colbert: bool = False,
                factory: str = "Flat", metric: str = "ip", search_params: dict | None = None,
                vectors: Vectors | None = None, overwrite: bool = False, batch_size: int | None = None,
                show_progress: bool = True) -> IndexStore:
    """Build an index folder from documents; an existing index stays live until the new one is complete.

    Args:
        path: the index folder (created; an existing index is replaced only with ``overwrite=True``).
        model: a bgekit embedder; BGE-M3 models give sparse (and, with ``colbert``, ColBERT) vectors too.
        documents: dicts with ``id``, ``text`` (optional ``title``, ``metadata``), :class:`Documents`, or a
            :class:`~bgekit.index.documents.CorpusStream` (``stream_corpus("docs.jsonl")``: read, encoded and
            written a chunk at a time, so memory stays flat however large the corpus).
        outputs: what to store; default dense (+ sparse for BGE-M3, + colbert if ``colbert``).
        colbert: also store ColBERT vectors (BGE-M3; float16, memory-mapped) for rescoring.
        factory / metric / search_params: the FAISS index ("Flat" exact; "HNSW32", "IVF256,Flat"...).
        vectors: precomputed vectors instead of encoding (``model`` is still recorded and probed): a
            :class:`Vectors` for documents in memory, or, for a streamed corpus, a row source whose
            ``take(ids) -> (dense, sparse or None)`` gives the next chunk's vectors in corpus order (the
            :class:`~bgekit.distributed.shards.RowReader` of a Ray encode's shards).
        overwrite: replace an existing index.
        batch_size, show_progress: encoding settings.

    Returns:
        The open :class:`IndexStore`.
    """
    from bgekit.index.dense import DenseIndex

    m3 = hasattr(model, "encode_multi")
    outputs = _check_outputs(outputs or (("dense", "sparse") if m3 else ("dense",)) + (("colbert",) if colbert else ()))
    info = ModelInfo.of(model)
    if info.visual is not None and outputs != ("dense",):
        raise ValueError(f"a Visualized-BGE index holds dense vectors only; outputs {list(outputs)} need a BGE-M3 model")
    DenseIndex(info.dim, factory=factory, metric=metric, search_params=search_params)  # fail early on bad settings
    chunks, ids, vectors = _sources(documents, vectors, outputs, info)
    path = os.path.abspath(path)
    if os.path.isdir(path) and any(not _ours(n) for n in os.listdir(path)):
        raise ValueError(f"{path!r} holds files that are not a bgekit index; choose an empty or new folder")
    with G.write_lock(path):
        current = G.read_pointer(path)
        if current is not None and not overwrite:
            raise UsageError(f"an index already exists in {path!r}; add to it, or rebuild it with overwrite=True "
                             "(bgekit index build --overwrite)")
        G.collect_garbage(path, current)
        number = G.next_number(path, current)
        manifest = {"model": info.to_json(), "outputs": list(outputs),
                    "dense": {"factory": factory, "metric": metric, "search_params": search_params or {}}}
        with SegmentWriter(path, number, manifest) as writer:
            _fill(writer, chunks, len(ids), model, vectors, outputs, info, batch_size, show_progress)
            entry = writer.commit()
        G.commit_generation(path, number, {**manifest, "segments": [entry]}, {})
    return IndexStore(path)


def _sources(documents: Any, vectors: Any, outputs: tuple[str, ...],
             info: ModelInfo) -> tuple[Iterable[D.Documents], list[str], Any]:
    """(chunks of documents, their ids in order, vectors checked) for a build or an add.

    Documents in memory are validated whole (image paths of a Visualized-BGE index relative to the working
    folder); a :class:`~bgekit.index.documents.CorpusStream` was checked when it was opened and stays on disk.
    """
    visual = info.visual is not None
    if isinstance(documents, D.CorpusStream):
        if vectors is not None and not hasattr(vectors, "take"):
            raise ValueError("a streamed corpus takes its precomputed vectors from a row source with take(ids) "
                             "(ShardSet.reader()), not from Vectors held in memory")
        if visual != (documents.images is not None):
            raise ValueError(f"{documents.path}: " + ("a Visualized-BGE index reads image paths: open the corpus with "
                                                      "stream_corpus(path, images=True)" if visual else
                                                      "stream_corpus(path, images=True) is for a Visualized-BGE "
                                                      f"index; {info.name!r} encodes texts only"))
        return documents, documents.ids, vectors
    if vectors is not None and hasattr(vectors, "take"):
        raise ValueError("a row source of vectors (take(ids)) goes with a streamed corpus (stream_corpus(path))")
    docs = D.as_documents(documents, images=os.getcwd() if visual else None)
    if vectors is not None:
        vectors = _check_vectors(vectors, len(docs), outputs, info)
    return [docs], docs.ids, vectors


def _fill(writer: SegmentWriter, chunks: Iterable[D.Documents], total: int, model: Any, vectors: Vectors | None,
          outputs: tuple[str, ...], info: ModelInfo, batch_size: int | None, show_progress: bool) -> None:
    """Append documents to ``writer``: given vectors at once, or encoded ENCODE_CHUNK documents at a time (a
    streamed corpus arrives in chunks: neither its texts nor its vectors are ever all in memory)."""
    if vectors is not None:
        for docs in chunks:
            if hasattr(vectors, "take"):  # a row source: the next chunk's vectors, its ids checked
                dense, sparse = vectors.take(docs.ids)
                writer.append(docs, _check_vectors(Vectors(dense=dense, sparse=sparse), len(docs), outputs, info))
            else:
                writer.append(docs, vectors)
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="Indexing", unit="doc", disable=not show_progress or not total) as bar:
        for docs in chunks:
            for start in range(0, len(docs), ENCODE_CHUNK):
                part = docs.slice(start, min(start + ENCODE_CHUNK, len(docs)))
                images = part.images() if info.visual is not None else None
                enc = encode(model, part.for_encoding(), "passage", outputs, batch_size, images=images)
                writer.append(part, _check_vectors(enc, len(part), outputs, info))
                bar.update(len(part))


def _ours(name: str) -> bool:
    return name in (G.POINTER, G.LOCK) or name.startswith(("gen-", ".gen-", "seg-", ".seg-", f".{G.POINTER}."))
