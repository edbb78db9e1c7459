"""A persisted hybrid index: dense (FAISS), sparse (CSR), optional ColBERT vectors and the documents, in a folder.

Every change (build, add, delete) writes a complete new generation and then switches a pointer file
atomically (see :mod:`bgekit.index.generation`), so a process killed at any moment leaves the previous index
readable and complete. The index records the model it was built with and refuses any other (see
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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bgekit.errors import UsageError
from bgekit.index import documents as D
from bgekit.index import generation as G
from bgekit.index import integrity as I
from bgekit.index.model_info import ModelInfo
from bgekit.types import SparseVector

OUTPUTS = ("dense", "sparse", "colbert")
ENCODE_CHUNK = 2048  # documents encoded (and written) per step
FILTER_CACHE = 64    # metadata filters whose matching rows are kept per open generation


@dataclass
class Vectors:
    """Encoded documents or queries; an output not present is None."""

    dense: np.ndarray | None = None            # (N, D) float32
    sparse: list[SparseVector] | None = None    # N sparse lexical vectors
    colbert: list[np.ndarray] | None = None     # N arrays (n_i, C)


def encode(model: Any, texts: list[str], role: str, outputs: Sequence[str], batch_size: int | None = None,
           show_progress: bool | None = False) -> Vectors:
    """Encode ``texts`` as "query" or "passage" into the asked outputs (sparse / ColBERT need BGE-M3)."""
    roles = {"query": "encode_queries", "passage": "encode_corpus"}
    if role not in roles:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(roles)}")
    if hasattr(model, "encode_multi"):
        out = model.encode_multi(texts, role=role, outputs=tuple(outputs), batch_size=batch_size, show_progress=show_progress)
        return Vectors(out.dense, out.sparse, out.colbert)
    if set(outputs) - {"dense"}:
        raise ValueError(f"outputs {sorted(set(outputs) - {'dense'})} need a BGE-M3 model; "
                         f"{type(model).__name__} gives dense vectors only")
    return Vectors(np.asarray(getattr(model, roles[role])(texts, batch_size=batch_size, show_progress=show_progress),
                              dtype=np.float32))


def _check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise ValueError(f"index outputs must be a non-empty subset of {', '.join(OUTPUTS)}; got {list(outputs)}")
    if "dense" not in outputs:
        raise ValueError("an index always holds dense vectors: include 'dense' in outputs")
    return tuple(o for o in OUTPUTS if o in outputs)


def _check_vectors(vectors: Vectors, n: int, outputs: tuple[str, ...], info: ModelInfo) -> Vectors:
    """Vectors for n documents must hold every output the index stores, in the index's shapes."""
    from bgekit.index.dense import as_matrix

    for name in outputs:
        if getattr(vectors, name) is None:
            raise ValueError(f"the index stores {name} vectors: vectors.{name} is missing")
    dense = as_matrix(vectors.dense, "vectors.dense", info.dim)
    if len(dense) != n:
        raise ValueError(f"vectors.dense has {len(dense)} rows for {n} documents")
    sparse = colbert = None
    if "sparse" in outputs:
        sparse = [v if isinstance(v, SparseVector) else SparseVector.from_dict(v) for v in vectors.sparse]
        if len(sparse) != n:
            raise ValueError(f"vectors.sparse has {len(sparse)} entries for {n} documents")
    if "colbert" in outputs:
        colbert = [np.asarray(c, dtype=np.float32) for c in vectors.colbert]
        bad = [i for i, c in enumerate(colbert) if c.ndim != 2 or c.shape[1] != info.colbert_dim]
        if len(colbert) != n or bad:
            raise ValueError(f"vectors.colbert must be {n} arrays (n_i, {info.colbert_dim})"
                             + (f"; entry {bad[0]} has shape {colbert[bad[0]].shape}" if bad else ""))
    return Vectors(dense, sparse, colbert)


class IndexStore:
    """An open index folder: the live generation's indexes, memory-mapped arrays and document table.

    Open one with :func:`open_index`; create one with :func:`build_index`. ``add`` and ``delete`` commit a
    new generation and reopen it. :meth:`reload` picks up changes made by another process.

    Attributes:
        path, generation, manifest, model_info (:class:`ModelInfo`), outputs, count,
        dense (:class:`~bgekit.index.dense.DenseIndex`), dense_vectors ((N, D) memory-mapped),
        sparse (:class:`~bgekit.index.sparse.SparseIndex` or None), colbert ((T, C) float16 memory-mapped or None),
        colbert_offsets ((N + 1,) or None).
    """

    def __init__(self, path: str, search_params: dict | None = None):
        self.path = os.path.abspath(path)
        self._search_params = search_params
        self._lock = threading.Lock()
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

    def _load(self, folder: str) -> None:
        manifest = I.read_manifest(folder)
        self.manifest, self.folder = manifest, folder
        self.model_info = ModelInfo.from_json(manifest["model"])
        self.outputs, self.count = tuple(manifest["outputs"]), int(manifest["count"])
        self.dense_vectors = np.load(os.path.join(folder, "dense.npy"), mmap_mode="r")
        self.dense = self._dense_index(folder)
        self.sparse = self.colbert = self.colbert_offsets = None
        if "sparse" in self.outputs:
            import scipy.sparse as sp

            from bgekit.index.sparse import SparseIndex

            arrays = [np.load(os.path.join(folder, f"sparse_{k}.npy")) for k in ("values", "indices", "indptr")]
            self.sparse = SparseIndex(sp.csr_matrix(tuple(arrays), shape=(self.count, manifest["sparse_vocab"])))
        if "colbert" in self.outputs:
            self.colbert_offsets = np.load(os.path.join(folder, "colbert_offsets.npy"))
            total, dim = int(self.colbert_offsets[-1]), self.model_info.colbert_dim
            self.colbert = (np.memmap(os.path.join(folder, "colbert.f16"), dtype=np.float16, mode="r", shape=(total, dim))
                            if total else np.zeros((0, dim), np.float16))
        self.docs_path = os.path.join(folder, "docs.sqlite")
        self.db = D.open_readonly(self.docs_path, count=self.count)
        self._filters: dict[str, np.ndarray] = {}

    def _dense_index(self, folder: str):
        from bgekit.index.dense import DenseIndex

        settings = self.manifest["dense"]
        params = settings.get("search_params") if self._search_params is None else self._search_params
        if settings["factory"].strip().lower() == "flat":
            index = DenseIndex(self.model_info.dim, factory="Flat", metric=settings["metric"])
            index.add(self.dense_vectors)
            return index
        import faiss

        # TODO(index helper): a DenseIndex.from_faiss(index, vectors) constructor would avoid these attributes.
        index = DenseIndex(self.model_info.dim, factory=settings["factory"], metric=settings["metric"])
        index.index = faiss.read_index(os.path.join(folder, "dense.faiss"))
        index._vectors = [np.asarray(self.dense_vectors)]
        for name, value in (params or {}).items():
            index._set_param(name, value)
        return index

    def check(self) -> None:
        """Verify the live generation in full (file sizes, and SQLite's integrity check of the document table).

        Raises:
            InputError: what is damaged, naming the file.
        """
        I.read_manifest(self.folder)
        D.open_readonly(self.docs_path, count=self.count, full_check=True).close()

    def documents(self, rows: Sequence[int]) -> dict[int, tuple[str, str, str | None, dict]]:
        """row -> (id, text, title, metadata)."""
        with self._lock, I.damage_named(self.docs_path):
            return D.fetch(self.db, rows)

    def rows(self, ids: Sequence[str]) -> dict[str, int]:
        """id -> row for the ids present."""
        with self._lock, I.damage_named(self.docs_path):
            return D.rows_of_ids(self.db, ids)

    def filter_rows(self, where: dict) -> np.ndarray:
        """Rows whose metadata matches an exact-value filter (see :func:`bgekit.index.documents.filter_sql`).

        Results are cached per generation (a generation never changes), up to FILTER_CACHE filters.
        """
        key = json.dumps(where, sort_keys=True, default=repr)
        with self._lock:
            rows = self._filters.get(key)
            if rows is None:
                with I.damage_named(self.docs_path):
                    rows = D.filter_rows(self.db, where)
                if len(self._filters) >= FILTER_CACHE:
                    self._filters.pop(next(iter(self._filters)))
                self._filters[key] = rows
            return rows

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"IndexStore({self.path!r}, {self.generation}, count={self.count}, outputs={list(self.outputs)}, "
                f"model={self.model_info.name!r})")

    # ---------------------------------------------------------------- changing
    def add(self, documents: Any, model: Any = None, *, vectors: Vectors | None = None, upsert: bool = False,
            batch_size: int | None = None, show_progress: bool = True) -> "IndexStore":
        """Add documents (encoded with ``model``, or given as ``vectors``) in one new generation.

        Args:
            documents: dicts with ``id``, ``text`` (optional ``title``, ``metadata``) or :class:`Documents`.
            model: the index's model (checked); needed unless ``vectors`` are given.
            vectors: precomputed :class:`Vectors` holding every output the index stores.
            upsert: replace documents whose ids exist (else those ids are an error).
            batch_size, show_progress: encoding settings.

        Returns:
            self, reopened on the new generation.
        """
        docs = D.as_documents(documents)
        if vectors is None:
            if model is None:
                raise ValueError("add needs the index's model to encode documents, or precomputed vectors")
            self.model_info.check(model, use="passage")
        else:
            vectors = _check_vectors(vectors, len(docs), self.outputs, self.model_info)
        with G.write_lock(self.path):
            self.reload()
            existing = self.rows(docs.ids)
            if existing and not upsert:
                shown = ", ".join(repr(i) for i in list(existing)[:5])
                raise UsageError(f"{len(existing)} document id(s) already in the index ({shown}); replace them with "
                                 "upsert=True (bgekit index add --upsert), or delete them first")
            with self._writer(self.manifest) as writer:
                writer.copy(self, np.fromiter(existing.values(), dtype=np.int64, count=len(existing)))
                _fill(writer, docs, model, vectors, self.outputs, self.model_info, batch_size, show_progress)
                writer.commit()
            self.reload()
        return self

    def delete(self, ids: Sequence[str], missing: str = "error") -> "IndexStore":
        """Delete documents by id in one new generation.

        Args:
            ids: document ids.
            missing: "error" (an absent id raises ValueError) or "ignore".

        Returns:
            self, reopened on the new generation.
        """
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
            with self._writer(self.manifest) as writer:
                writer.copy(self, np.fromiter(found.values(), dtype=np.int64, count=len(found)))
                writer.commit()
            self.reload()
        return self

    def _writer(self, manifest: dict) -> G.GenerationWriter:
        base = {k: manifest[k] for k in ("model", "outputs", "dense", "sparse_vocab") if k in manifest}
        G.collect_garbage(self.path, self.generation)
        return G.GenerationWriter(self.path, int(self.generation[4:]) + 1, base)


def _fill(writer: G.GenerationWriter, docs: D.Documents, model: Any, vectors: Vectors | None, outputs: tuple[str, ...],
          info: ModelInfo, batch_size: int | None, show_progress: bool) -> None:
    """Append ``docs`` to ``writer``: given vectors at once, or encoded chunk by chunk with a progress bar."""
    if vectors is not None:
        writer.append(docs, vectors)
        return
    from tqdm.auto import tqdm

    texts = docs.for_encoding()
    with tqdm(total=len(docs), desc="Indexing", unit="doc", disable=not show_progress or not len(docs)) as bar:
        for start in range(0, len(docs), ENCODE_CHUNK):
            end = min(start + ENCODE_CHUNK, len(docs))
            enc = encode(model, texts[start:end], "passage", outputs, batch_size)
            writer.append(docs.slice(start, end), _check_vectors(enc, end - start, outputs, info))
            bar.update(end - start)


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
        documents: dicts with ``id``, ``text`` (optional ``title``, ``metadata``) or :class:`Documents`.
        outputs: what to store; default dense (+ sparse for BGE-M3, + colbert if ``colbert``).
        colbert: also store ColBERT vectors (BGE-M3; float16, memory-mapped) for rescoring.
        factory / metric / search_params: the FAISS index ("Flat" exact; "HNSW32", "IVF256,Flat"...).
        vectors: precomputed vectors instead of encoding (``model`` is still recorded and probed).
        overwrite: replace an existing index.
        batch_size, show_progress: encoding settings.

    Returns:
        The open :class:`IndexStore`.
    """
    from bgekit.index.dense import DenseIndex

    m3 = hasattr(model, "encode_multi")
    outputs = _check_outputs(outputs or (("dense", "sparse") if m3 else ("dense",)) + (("colbert",) if colbert else ()))
    info = ModelInfo.of(model)
    DenseIndex(info.dim, factory=factory, metric=metric, search_params=search_params)  # fail early on bad settings
    docs = D.as_documents(documents)
    if vectors is not None:
        vectors = _check_vectors(vectors, len(docs), outputs, info)
    path = os.path.abspath(path)
    if os.path.isdir(path) and any(not _ours(n) for n in os.listdir(path)):
        raise ValueError(f"{path!r} holds files that are not a bgekit index; choose an empty or new folder")
    with G.write_lock(path):
        current = G.read_pointer(path)
        if current is not None and not overwrite:
            raise UsageError(f"an index already exists in {path!r}; add to it, or rebuild it with overwrite=True "
                             "(bgekit index build --overwrite)")
        G.collect_garbage(path, current)
        manifest = {"model": info.to_json(), "outputs": list(outputs),
                    "dense": {"factory": factory, "metric": metric, "search_params": search_params or {}}}
        with G.GenerationWriter(path, int(current[4:]) + 1 if current else 1, manifest) as writer:
            _fill(writer, docs, model, vectors, outputs, info, batch_size, show_progress)
            writer.commit()
    return IndexStore(path)


def _ours(name: str) -> bool:
    return name in (G.POINTER, G.LOCK) or name.startswith(("gen-", ".gen-", f".{G.POINTER}."))
