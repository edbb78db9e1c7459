"""Search a collection written by :func:`~bgekit.index.milvus.export_to_milvus` with the index's model.

Dense and sparse search run in Milvus; "hybrid" runs both and fuses them with Milvus's rankers: ``fusion="rrf"``
is its RRFRanker, ``fusion="weighted_sum"`` its WeightedRanker over raw scores (the local index's default
weights: dense 1.0, sparse 0.3). Unlike the local index, Milvus fuses each signal's own candidates (a document
one signal did not retrieve adds 0 for it) and reports only the fused score. A reranker, when given, rescores
the fused candidates here. L2 collections report negative squared distances, as the local index does.

:class:`MilvusSearcher` has the local :class:`~bgekit.index.search.Searcher`'s ``search`` signature and the
attributes ``bgekit serve`` reads (``store``: the collection's record, reread when it is exported again).

Example:
    >>> searcher = MilvusSearcher(milvus_client("milvus.db"), "docs", load_embedder("BAAI/bge-m3"))  # doctest: +SKIP
    >>> searcher.search("how do tortoises live so long", top_k=5, mode="hybrid", fusion="rrf")       # doctest: +SKIP
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from bgekit.errors import InputError
from bgekit.index.milvus import OUTPUT_FIELDS, PROP_EXPORT, PROP_METRIC, PROP_MODEL, PROP_OUTPUTS, filter_expr, milvus_errors
from bgekit.index.model_info import ModelInfo
from bgekit.index.search import (DEFAULT_POOL, FUSIONS, MODES, Searcher, SearchHit, SearchResult, _check_int,
                                 _check_weights)
from bgekit.index.store import encode

LIMIT = 16384  # Milvus's largest top-k


class MilvusCollection:
    """What an exported collection records (the model, outputs, metric) and its size: the searcher's ``store``.

    Attributes:
        path ("URI#collection"), generation (the export's stamp), count, outputs, model_info, metric.
    """

    def __init__(self, client: Any, name: str, uri: str | None = None):
        self.client, self.name = client, name
        self.path = f"{uri}#{name}" if uri else name
        self.generation: str | None = None
        self.reload()

    def reload(self) -> bool:
        """Reread the collection's record if it was exported again. Returns True if it changed."""
        with milvus_errors(f"reading collection {self.name!r}"):
            if not self.client.has_collection(self.name):
                raise InputError(f"Milvus has no collection {self.name!r}; export an index to it first "
                                 "(bgekit index export-milvus)")
            props = self.client.describe_collection(self.name).get("properties") or {}
            if PROP_MODEL not in props or PROP_EXPORT not in props:
                raise InputError(f"Milvus collection {self.name!r} was not written by bgekit index export-milvus "
                                 "(it records no bgekit model)")
            if props[PROP_EXPORT] == self.generation:
                return False
            if "Loaded" not in str(self.client.get_load_state(self.name).get("state")):
                self.client.load_collection(self.name)  # Milvus searches loaded collections only
            self.count = int(self.client.get_collection_stats(self.name)["row_count"])
        self.model_info = ModelInfo.from_json(json.loads(props[PROP_MODEL]), where=f"Milvus collection {self.name!r}")
        self.outputs = tuple(props[PROP_OUTPUTS].split(","))
        self.metric = props[PROP_METRIC]
        self.generation = props[PROP_EXPORT]
        return True


class MilvusSearcher:
    """Searches a Milvus collection with the index's model and, optionally, a reranker.

    Args:
        client: a MilvusClient (see :func:`~bgekit.index.milvus.milvus_client`).
        collection: the collection name.
        model: the embedder the index was built with (checked against the collection's record).
        reranker: any bgekit reranker (``score(pairs)``), to rescore the fused candidates.
        uri: the client's URI, for ``/health`` (optional).
    """

    def __init__(self, client: Any, collection: str, model: Any, reranker: Any = None, uri: str | None = None,
                 check_model: bool = True):
        self.client, self.collection = client, collection
        # the local Searcher's reranker check and model check (per export generation), over the collection's record
        Searcher.__init__(self, MilvusCollection(client, collection, uri), model, reranker, check_model)

    _check_model = Searcher._check_model

    def search(self, queries: str | Sequence[str], top_k: int = 10, *, mode: str = "dense",
               fusion: str = "weighted_sum", weights: dict | None = None, colbert: bool = False,
               candidates: int | None = None, rerank: bool | None = None, rerank_depth: int | None = None,
               filter: dict | None = None, rrf_k: int = 60) -> SearchResult | list[SearchResult]:
        """Search one query (returns a :class:`SearchResult`) or a list of them (returns a list).

        Arguments as :meth:`bgekit.index.search.Searcher.search`; ``colbert`` is refused (not exported).
        """
        single = isinstance(queries, str)
        texts = [queries] if single else queries
        if not isinstance(texts, (list, tuple)) or not all(isinstance(q, str) for q in texts):
            raise TypeError("queries must be a string or a list of strings")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
        if colbert:
            raise ValueError("ColBERT rescoring is not available through Milvus (an export holds dense and sparse "
                             "vectors); search the local index (--index-dir) for it")
        top_k, weights = _check_int(top_k, "top_k"), _check_weights(weights)
        rerank_depth = _check_int(rerank_depth, "rerank_depth", True)
        rerank = self.reranker is not None if rerank is None else bool(rerank)
        if rerank and self.reranker is None:
            raise ValueError("rerank=True needs a MilvusSearcher created with a reranker")
        if self.store.reload():
            self._check_model()
        signals = MODES[mode]
        for s in signals:
            if s not in self.store.outputs:
                raise ValueError(f"{s} search needs {s} vectors; the collection holds {', '.join(self.store.outputs)}")
        if self.store.metric == "l2" and len(signals) > 1 and fusion == "weighted_sum":
            raise ValueError("a weighted sum of L2 distances and sparse scores means nothing; use fusion='rrf'")
        depth = _check_int(candidates, "candidates", True) or (
            max(top_k, DEFAULT_POOL) if len(signals) > 1 or rerank else top_k)
        if max(depth, top_k) > LIMIT:
            raise ValueError(f"top_k and candidates must be at most {LIMIT} (Milvus's limit), got {max(depth, top_k)}")
        expr = filter_expr(filter)
        if not texts:
            return []
        qv = encode(self.model, list(texts), "query", signals)
        data = {"dense": lambda: [v.tolist() for v in qv.dense],
                "sparse": lambda: [{int(i): float(x) for i, x in zip(v.indices, v.values)} or {2**32 - 3: 1.0}
                                   for v in qv.sparse]}  # an empty query: a dimension no document has
        limit = depth if rerank else top_k
        with milvus_errors(f"search in collection {self.collection!r}"):
            hits = self._retrieve(signals, data, expr, limit, depth, fusion, weights, rrf_k)
        stage = signals[0] if len(signals) == 1 else "fused"
        results = [self._finish(q, found, stage, top_k, rerank, rerank_depth) for q, found in zip(texts, hits)]
        return results[0] if single else results

    def _retrieve(self, signals, data, expr, limit, depth, fusion, weights, rrf_k) -> list[list[dict]]:
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        metric = {"ip": "IP", "l2": "L2"}[self.store.metric]
        params = {"dense": {"metric_type": metric}, "sparse": {"metric_type": "IP"}}
        if len(signals) == 1:
            s = signals[0]
            return self.client.search(self.collection, data[s](), anns_field=s, limit=limit, filter=expr,
                                      search_params=params[s], output_fields=OUTPUT_FIELDS)
        requests = [AnnSearchRequest(data[s](), s, params[s], limit=depth, expr=expr or None) for s in signals]
        ranker = (RRFRanker(rrf_k) if fusion == "rrf"
                  else WeightedRanker(*[weights[s] for s in signals], norm_score=False))
        return self.client.hybrid_search(self.collection, requests, ranker, limit=limit, output_fields=OUTPUT_FIELDS)

    def _finish(self, query: str, found: list[dict], stage: str, top_k: int, rerank: bool, rerank_depth: int | None):
        sign = -1.0 if stage == "dense" and self.store.metric == "l2" else 1.0  # Milvus: squared distance
        scored = [(h["entity"], {stage: sign * float(h["distance"])}) for h in found]
        if rerank and scored:
            head, tail = scored[:rerank_depth or len(scored)], scored[rerank_depth or len(scored):]
            pairs = [(query, f"{e['title']} {e['text']}".strip() if e.get("title") else e["text"]) for e, _ in head]
            for (_, scores), s in zip(head, self.reranker.score(pairs)):
                scores["rerank"] = float(s)
            scored = sorted(head, key=lambda h: -h[1]["rerank"]) + tail  # stable: fused order on ties
        hits = [SearchHit(e["doc_id"], rank, scores.get("rerank", scores[stage]), e["text"], e.get("title"),
                          e.get("metadata") or {}, scores) for rank, (e, scores) in enumerate(scored[:top_k], 1)]
        return SearchResult(query, hits, (stage,) + (("rerank",) if rerank else ()))
