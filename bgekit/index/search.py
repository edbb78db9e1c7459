"""Search a persisted index: dense, sparse or hybrid retrieval, ColBERT rescoring, reranking, metadata filters.

A search runs in stages. Each retrieval signal of the mode (dense, sparse, or both for "hybrid") returns its
top candidates from the index (FAISS / the inverted index; with a filter, exactly over the matching documents);
the union of those candidates is the pool. Every signal, plus ColBERT max-sim when asked, is then scored
exactly on the whole pool, and the signals are fused: a weighted sum of the scores, or reciprocal-rank fusion of
each signal's ranking of the pool. Optionally a reranker rescores the best of the fused list. Hits carry every
stage's score.

Example:
    >>> searcher = Searcher(open_index("my-index"), load_embedder("BAAI/bge-m3"))          # doctest: +SKIP
    >>> result = searcher.search("how do tortoises live so long", top_k=5, mode="hybrid")   # doctest: +SKIP
    >>> [(h.id, round(h.score, 3), sorted(h.scores)) for h in result.hits]                  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from bgekit.index.store import IndexStore, Vectors, encode

MODES: dict[str, tuple[str, ...]] = {"dense": ("dense",), "sparse": ("sparse",), "hybrid": ("dense", "sparse")}
FUSIONS = ("weighted_sum", "rrf")
DEFAULT_WEIGHTS = {"dense": 1.0, "sparse": 0.3, "colbert": 1.0}
DEFAULT_POOL = 100  # candidates per signal when later stages (fusion, ColBERT, reranking) rescore them


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document.

    Attributes:
        id, text, title, metadata: the document.
        rank: from 1.
        score: the final stage's score (reranker, fused, or the single signal).
        scores: every stage's score: "dense", "sparse", "colbert", "fused", "rerank" (those that ran).
    """

    id: str
    rank: int
    score: float
    text: str
    title: str | None = None
    metadata: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query, best first, and the stages that produced them."""

    query: str
    hits: list[SearchHit]
    stages: tuple[str, ...]


def _check_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_weights(weights: Any) -> dict[str, float]:
    if weights is None:
        return dict(DEFAULT_WEIGHTS)
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict like {DEFAULT_WEIGHTS}, got {type(weights).__name__}")
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown weights {unknown}; valid: {', '.join(DEFAULT_WEIGHTS)}")
    for k, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w):
            raise ValueError(f"weights[{k!r}] must be a finite number, got {w!r}")
    return {**DEFAULT_WEIGHTS, **{k: float(w) for k, w in weights.items()}}


def _queries(queries: Any, images: Any, info: Any) -> tuple[list[str], list | None, bool]:
    """(texts, images or None, single): texts are "" where a row is an image alone."""
    if images is None:
        single = isinstance(queries, str)
        texts = [queries] if single else queries
        if not isinstance(texts, (list, tuple)) or not all(isinstance(q, str) for q in texts):
            raise TypeError("queries must be a string or a list of strings")
        return list(texts), None, single
    if info.visual is None:
        raise ValueError(f"image queries need an index built with a Visualized-BGE model; this one was built with "
                         f"the text model {info.name!r}")
    single = not isinstance(images, (list, tuple))
    pictures = [images] if single else list(images)
    if queries is None:
        return [""] * len(pictures), pictures, single
    texts = [queries] if isinstance(queries, str) else queries
    if not isinstance(texts, (list, tuple)) or not all(isinstance(q, str) for q in texts):
        raise TypeError("queries must be a string or a list of strings")
    if len(texts) != len(pictures) or isinstance(queries, str) != single:
        raise ValueError(f"composed queries pair images[i] with queries[i]: got {len(pictures)} image(s) and "
                         f"{len(texts)} text(s)")
    return list(texts), pictures, single


def _labels(texts: list[str], pictures: list | None) -> list[str]:
    """What each result's ``query`` says: the text, and the image (its path) for image queries."""
    if pictures is None:
        return texts
    names = [p if isinstance(p, str) else f"<{type(p).__name__}>" for p in pictures]
    return [f"[image {n}] {t}".strip() for t, n in zip(texts, names)]


class Searcher:
    """Searches one index with its model and, optionally, a reranker.

    Args:
        store: an open :class:`~bgekit.index.store.IndexStore`.
        model: the embedder the index was built with (checked; a different one raises IndexModelMismatch).
        reranker: any bgekit reranker (``Reranker``, ``FlagReranker``, ``FlagAutoReranker.from_finetuned(...)``,
            layerwise / lightweight ones): anything with ``score(pairs) -> list[float]``.
        check_model: verify ``model`` against the index (on by default).
    """

    def __init__(self, store: IndexStore, model: Any, reranker: Any = None, check_model: bool = True):
        if reranker is not None and not callable(getattr(reranker, "score", None)):
            raise TypeError(f"reranker must be a bgekit reranker with score(pairs), got {type(reranker).__name__}")
        self.store, self.model, self.reranker = store, model, reranker
        self._check = check_model
        self._checked: str | None = None
        self._check_model()

    def _check_model(self) -> None:
        if self._check and self._checked != self.store.generation:
            self.store.model_info.check(self.model, use="query")
            self._checked = self.store.generation

    def search(self, queries: str | Sequence[str] | None = None, top_k: int = 10, *, images: Any = None,
               mode: str = "dense",
               fusion: str = "weighted_sum", weights: dict | None = None, colbert: bool = False,
               candidates: int | None = None, rerank: bool | None = None, rerank_depth: int | None = None,
               filter: dict | None = None, rrf_k: int = 60) -> SearchResult | list[SearchResult]:
        """Search one query (returns a :class:`SearchResult`) or a list of them (returns a list).

        Args:
            queries: query text(s); the model's query instruction is applied.
            images: image queries (an index built with a Visualized-BGE model): one image or a list (paths, PIL
                images, uint8 arrays); with ``queries`` too, image i and text i form one composed query.
            top_k: hits per query (fewer when fewer documents match).
            mode: "dense", "sparse" or "hybrid" (dense + sparse; sparse needs a BGE-M3 index).
            fusion: "weighted_sum" (of exact scores) or "rrf" (reciprocal-rank fusion), when several signals run.
            weights: per-signal weights for "weighted_sum": dense 1.0, sparse 0.3, colbert 1.0 by default.
            colbert: rescore the pool with ColBERT max-sim (index built with colbert=True) and fuse it in.
            candidates: candidates per retrieval signal; default top_k, or 100 when later stages rescore.
            rerank: rerank with the searcher's reranker (default: when it has one).
            rerank_depth: how many of the fused list the reranker reads (default: all candidates).
            filter: exact metadata values, e.g. ``{"lang": "en", "year": [2023, 2024]}`` (a list: any of).
            rrf_k: the RRF constant.
        """
        texts, pictures, single = _queries(queries, images, self.store.model_info)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
        top_k = _check_int(top_k, "top_k")
        weights = _check_weights(weights)
        rerank = self.reranker is not None if rerank is None else bool(rerank)
        if rerank and self.reranker is None:
            raise ValueError("rerank=True needs a Searcher created with a reranker")
        if rerank and pictures is not None:
            raise ValueError("a reranker reads texts: image queries cannot be reranked (rerank=False)")
        if self.store.reload():
            self._check_model()
        signals = MODES[mode] + (("colbert",) if colbert else ())
        for s in signals:
            if s not in self.store.outputs:
                raise ValueError(f"{s} search needs {s} vectors; the index holds {', '.join(self.store.outputs)}"
                                 + (" (build it with colbert=True)" if s == "colbert" else ""))
        allowed = None if filter is None else self.store.filter_rows(filter)
        available = self.store.count if allowed is None else len(allowed)
        rescored = len(signals) > 1 or rerank
        depth = min(_check_int(candidates, "candidates", True) or (max(top_k, DEFAULT_POOL) if rescored else top_k),
                    available)
        if not texts or depth == 0:
            results = [SearchResult(q, [], signals) for q in _labels(texts, pictures)]
        else:
            qv = encode(self.model, list(texts), "query", signals, images=pictures)
            pool, stage = self._score_pool(qv, signals, depth, allowed)
            order_scores, order_ids = self._fuse(pool, stage, signals, fusion, weights, rrf_k)
            results = self._finish(_labels(texts, pictures), order_ids, order_scores, pool, stage, signals, top_k, rerank,
                                   _check_int(rerank_depth, "rerank_depth", True))
        return results[0] if single else results

    # ---------------------------------------------------------------- stages
    def _retrieve(self, signal: str, qv: Vectors, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """Candidate rows (Q, k) of one signal, -1 padded."""
        index = self.store.dense if signal == "dense" else self.store.sparse
        query = qv.dense if signal == "dense" else qv.sparse
        if allowed is None:
            return index.search(query, k)[1]
        scores = index.scores_of(query, allowed)  # (Q, A), exact over the matching rows
        if signal == "sparse":
            scores[scores == 0] = -np.inf  # no shared token: not a sparse match
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.where(np.isfinite(np.take_along_axis(scores, order, 1)), allowed[order], -1)

    def _score_pool(self, qv: Vectors, signals: tuple[str, ...], depth: int, allowed: np.ndarray | None):
        """The union of every retrieval signal's candidates, and every signal's exact score on it."""
        lists = [self._retrieve(s, qv, depth, allowed) for s in signals if s != "colbert"]
        rows = [list(dict.fromkeys(int(d) for lst in lists for d in lst[q] if d >= 0)) for q in range(len(lists[0]))]
        width = max(1, max(len(r) for r in rows))
        pool = np.full((len(rows), width), -1, dtype=np.int64)
        for q, r in enumerate(rows):
            pool[q, :len(r)] = r
        stage: dict[str, np.ndarray] = {}
        if "dense" in signals:
            stage["dense"] = self.store.dense.score(qv.dense, pool)
        if "sparse" in signals:
            stage["sparse"] = self.store.sparse.score(qv.sparse, pool)
        if "colbert" in signals:
            stage["colbert"] = self._colbert(qv.colbert, pool)
        return pool, stage

    def _colbert(self, queries: list[np.ndarray], pool: np.ndarray) -> np.ndarray:
        from bgekit.scoring import maxsim

        out = np.full(pool.shape, -np.inf, dtype=np.float32)
        for q, row in enumerate(pool):
            for j, d in enumerate(row):
                if d >= 0:
                    out[q, j] = maxsim(queries[q], self.store.colbert_of(int(d)))
        return out

    def _fuse(self, pool: np.ndarray, stage: dict, signals: tuple[str, ...], fusion: str, weights: dict, rrf_k: int):
        """The pool ordered by the fused score: (scores, rows), each (Q, m), -1 padded."""
        from bgekit.index.fusion import fuse

        if len(signals) == 1:
            lists = [(stage[signals[0]], pool)]
            return fuse("weighted_sum", lists, weights=[1.0], missing="zero")
        if fusion == "weighted_sum":
            return fuse("weighted_sum", [(stage[s], pool) for s in signals], weights=[weights[s] for s in signals],
                        missing="zero")
        ranked = []
        for s in signals:  # each signal's own ranking of the pool
            order = np.lexsort((pool, -stage[s]), axis=-1)
            ranked.append((np.take_along_axis(stage[s], order, 1), np.take_along_axis(pool, order, 1)))
        return fuse("rrf", ranked, k=rrf_k)

    def _finish(self, texts, order_ids, order_scores, pool, stage, signals, top_k, rerank, rerank_depth):
        """Rerank if asked, cut to top_k, attach documents and per-stage scores."""
        per_query = []
        for q in range(len(texts)):
            keep = order_ids[q] >= 0
            per_query.append((order_ids[q][keep].tolist(), order_scores[q][keep].tolist()))
        rerank_scores: list[dict[int, float]] = [{} for _ in texts]
        if rerank:
            rerank_scores = self._rerank(texts, [r[: rerank_depth or len(r)] for r, _ in per_query])
        wanted = {d for q, (rows, _) in enumerate(per_query) for d in self._final_order(rows, rerank_scores[q])[:top_k]}
        docs = self.store.documents(sorted(wanted))
        results = []
        for q, (rows, fused) in enumerate(per_query):
            col = {int(d): j for j, d in enumerate(pool[q]) if d >= 0}
            fused_of = dict(zip(rows, fused))
            hits = []
            for rank, d in enumerate(self._final_order(rows, rerank_scores[q])[:top_k], 1):
                scores = {s: float(stage[s][q, col[d]]) for s in signals}
                if len(signals) > 1:
                    scores["fused"] = float(fused_of[d])
                if d in rerank_scores[q]:
                    scores["rerank"] = rerank_scores[q][d]
                final = scores.get("rerank", scores.get("fused", scores[signals[0]]))
                doc_id, text, title, meta = docs[d]
                hits.append(SearchHit(doc_id, rank, final, text, title, meta, scores))
            results.append(SearchResult(texts[q], hits, signals + (("fused",) if len(signals) > 1 else ())
                                        + (("rerank",) if rerank else ())))
        return results

    @staticmethod
    def _final_order(rows: list[int], reranked: dict[int, float]) -> list[int]:
        """Reranked rows first (by reranker score, ties in fused order), then the rest in fused order."""
        if not reranked:
            return rows
        top = sorted((d for d in rows if d in reranked), key=lambda d: -reranked[d])  # stable: fused order on ties
        return top + [d for d in rows if d not in reranked]

    def _rerank(self, texts: Sequence[str], rows_per_query: list[list[int]]) -> list[dict[int, float]]:
        docs = self.store.documents(sorted({d for rows in rows_per_query for d in rows}))
        body = {d: f"{title} {text}".strip() if title else text for d, (_, text, title, _) in docs.items()}
        pairs = [(texts[q], body[d]) for q, rows in enumerate(rows_per_query) for d in rows]
        scores = self.reranker.score(pairs) if pairs else []
        out, i = [], 0
        for rows in rows_per_query:
            out.append({d: float(s) for d, s in zip(rows, scores[i:i + len(rows)])})
            i += len(rows)
        return out
