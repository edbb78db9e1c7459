"""Export an index to Qdrant (named dense, sparse and ColBERT multi-vectors) and search it from bgekit.

The same code serves qdrant-client's local mode (a folder, or ``":memory:"``) and a Qdrant server or cluster.
Points carry the document id, text, title and metadata as payload (the point id is a UUID derived from the
document id); the collection records the index's model (collection metadata) and :class:`QdrantSearcher`
refuses another. Hybrid search fuses dense and sparse candidates with Qdrant's reciprocal-rank fusion; ColBERT
rescoring uses Qdrant's MAX_SIM, which sums over query tokens where bgekit averages (same order, scores scaled).

Example:
    >>> client = qdrant_client(path="qdrant-data")                                # doctest: +SKIP
    >>> export_to_qdrant(open_index("my-index"), client, "docs")                   # doctest: +SKIP
    >>> QdrantSearcher(client, "docs", model).search("pandas", mode="hybrid")      # doctest: +SKIP
"""
from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from bgekit.index.model_info import ModelInfo
from bgekit.index.search import MODES, SearchHit, SearchResult
from bgekit.index.store import IndexStore, encode

NAMESPACE = uuid.UUID("6f1c4a52-5a3e-4b53-9a57-2f1d0c0b6b1e")
BATCH = 256


def _models():
    try:
        from qdrant_client import models
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("Qdrant export needs qdrant-client: pip install 'bgekit[index]'") from e
    return models


def qdrant_client(url: str | None = None, path: str | None = None, api_key: str | None = None):
    """A QdrantClient for a server (``url``) or local mode (``path``: a folder, or ":memory:")."""
    from qdrant_client import QdrantClient

    if (url is None) == (path is None):
        raise ValueError("give exactly one of url (a Qdrant server) or path (local mode folder or ':memory:')")
    if url is not None:
        client = QdrantClient(url=url, api_key=api_key)
        try:
            client.get_collections()  # connect now: an unreachable server is one clear error, before any work
        except Exception as e:  # noqa: BLE001 - the client wraps httpx/grpc errors in several types
            from bgekit.errors import OutputError

            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OutputError(f"cannot reach the Qdrant server at {url} ({reason}); is it running, and is the "
                              "URL (and $QDRANT_API_KEY) right?") from None
        return client
    return QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)


def point_id(doc_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, doc_id))


def export_to_qdrant(store: IndexStore, client: Any, collection: str, overwrite: bool = False,
                     show_progress: bool = True) -> int:
    """Copy every document of ``store`` into a new Qdrant collection. Returns the number of points.

    Args:
        store: an open index.
        client: a QdrantClient (see :func:`qdrant_client`).
        collection: the collection name; an existing one is an error unless ``overwrite``.
    """
    from tqdm.auto import tqdm

    m = _models()
    if client.collection_exists(collection):
        if not overwrite:
            raise ValueError(f"Qdrant collection {collection!r} exists; replace it with overwrite=True (bgekit index export-qdrant --overwrite)")
        client.delete_collection(collection)
    info = store.model_info
    distance = m.Distance.DOT if store.manifest["dense"]["metric"] == "ip" else m.Distance.EUCLID
    vectors = {"dense": m.VectorParams(size=info.dim, distance=distance)}
    if "colbert" in store.outputs:
        vectors["colbert"] = m.VectorParams(size=info.colbert_dim, distance=m.Distance.DOT,
                                            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM))
    sparse = {"sparse": m.SparseVectorParams()} if "sparse" in store.outputs else None
    client.create_collection(collection, vectors_config=vectors, sparse_vectors_config=sparse,
                             metadata={"bgekit_model": info.to_json(), "bgekit_outputs": list(store.outputs)})
    with tqdm(total=store.count, desc="Exporting", unit="doc", disable=not show_progress) as bar:
        for start in range(0, store.count, BATCH):
            rows = range(start, min(start + BATCH, store.count))
            client.upsert(collection, points=[_point(store, r, doc, m) for r, doc in store.documents(rows).items()])
            bar.update(len(rows))
    return store.count


def _point(store: IndexStore, row: int, doc: tuple, m: Any):
    doc_id, text, title, metadata = doc
    vector: dict[str, Any] = {"dense": np.asarray(store.dense_vectors[row], dtype=np.float32).tolist()}
    if store.sparse is not None:
        r = store.sparse.matrix[row]
        vector["sparse"] = m.SparseVector(indices=r.indices.tolist(), values=r.data.astype(float).tolist())
    if store.colbert is not None:
        a, b = store.colbert_offsets[row], store.colbert_offsets[row + 1]
        vector["colbert"] = np.asarray(store.colbert[a:b], dtype=np.float32).tolist()
    payload = {"doc_id": doc_id, "text": text, "title": title, "metadata": metadata}
    return m.PointStruct(id=point_id(doc_id), vector=vector, payload=payload)


def _filter(where: dict | None, m: Any):
    """bgekit's exact-value filter as a Qdrant filter on ``metadata.<field>`` (a list: any of)."""
    if not where:
        return None
    must = []
    for key, value in where.items():
        match = m.MatchAny(any=value) if isinstance(value, list) else m.MatchValue(value=value)
        must.append(m.FieldCondition(key=f"metadata.{key}", match=match))
    return m.Filter(must=must)


class QdrantSearcher:
    """Search a collection written by :func:`export_to_qdrant` with the index's model.

    Args:
        client: a QdrantClient.
        collection: the collection name.
        model: the embedder the index was built with (checked against the collection's record).
    """

    def __init__(self, client: Any, collection: str, model: Any):
        self.client, self.collection, self.model = client, collection, model
        meta = client.get_collection(collection).config.metadata or {}
        self.outputs = tuple(meta.get("bgekit_outputs", ("dense",)))
        if "bgekit_model" in meta:
            ModelInfo.from_json(meta["bgekit_model"]).check(model, use="query")

    def search(self, query: str, top_k: int = 10, *, mode: str = "dense", colbert: bool = False,
               candidates: int = 100, filter: dict | None = None) -> SearchResult:
        """Search one query: "dense", "sparse" or "hybrid" (Qdrant RRF), optionally rescored by ColBERT.

        Returns:
            A :class:`~bgekit.index.search.SearchResult` (per-stage scores hold the final stage only).
        """
        m = _models()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        signals = MODES[mode] + (("colbert",) if colbert else ())
        missing = [s for s in signals if s not in self.outputs]
        if missing:
            raise ValueError(f"the collection has no {missing[0]} vectors; it holds {', '.join(self.outputs)}")
        qv = encode(self.model, [query], "query", signals)
        named = {"dense": lambda: qv.dense[0].tolist(),
                 "sparse": lambda: m.SparseVector(indices=qv.sparse[0].indices.tolist(), values=qv.sparse[0].values.tolist()),
                 "colbert": lambda: np.asarray(qv.colbert[0]).tolist()}
        flt = _filter(filter, m)
        first = [s for s in signals if s != "colbert"]
        if len(first) == 1 and not colbert:
            kwargs = {"query": named[first[0]](), "using": first[0]}
        else:
            prefetch = [m.Prefetch(query=named[s](), using=s, limit=max(candidates, top_k), filter=flt) for s in first]
            if colbert:
                inner = prefetch if len(prefetch) == 1 else [m.Prefetch(prefetch=prefetch, query=m.FusionQuery(
                    fusion=m.Fusion.RRF), limit=max(candidates, top_k))]
                kwargs = {"prefetch": inner, "query": named["colbert"](), "using": "colbert"}
            else:
                kwargs = {"prefetch": prefetch, "query": m.FusionQuery(fusion=m.Fusion.RRF)}
        points = self.client.query_points(self.collection, query_filter=flt, limit=top_k, with_payload=True, **kwargs).points
        stage = "colbert" if colbert else ("fused" if len(first) > 1 else first[0])
        hits = [SearchHit(p.payload["doc_id"], rank, float(p.score), p.payload["text"], p.payload.get("title"),
                          p.payload.get("metadata") or {}, {stage: float(p.score)}) for rank, p in enumerate(points, 1)]
        return SearchResult(query, hits, (stage,))
