"""Retrieval for evaluation: encode (with the cache), search (dense, sparse, hybrid, BM25), drop ids, rerank.

Searches return ``(scores, indices)`` arrays (see :mod:`bgekit.index`); :func:`to_run` turns them into the
``query id -> {doc id: score}`` runs the metrics read. Following BEIR/MTEB, a retrieved document whose id
equals the query id is dropped before scoring (``drop_self=True``, the default in the runner): in collections
such as ArguAna or Quora a query is also a corpus document and would otherwise find itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

RETRIEVALS = ("dense", "sparse", "dense+sparse", "bm25")
ROLES = {"query": "encode_queries", "passage": "encode_corpus"}


@dataclass
class Encoded:
    """What a model produced for a list of texts; an output not asked for is None."""

    dense: np.ndarray | None = None          # (N, D) float32 (a memory map for a streamed corpus)
    sparse: Any = None                        # N SparseVector objects, or a SparseIndex over a streamed corpus's files


def check_bm25(k1: Any, b: Any) -> None:
    """BM25's k1 >= 0 (term-frequency saturation) and 0 <= b <= 1 (length normalisation), as in the formula."""
    from bgekit.errors import UsageError

    if isinstance(k1, bool) or not isinstance(k1, (int, float)) or not k1 >= 0:
        raise UsageError(f"bm25_k1 (--bm25-k1) must be a number >= 0, got {k1!r}")
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 1:
        raise UsageError(f"bm25_b (--bm25-b) must be a number in 0..1, got {b!r}")


def outputs_for(retrieval: str) -> tuple[str, ...]:
    """The model outputs a retrieval mode needs ("bm25" needs none)."""
    table = {"dense": ("dense",), "sparse": ("sparse",), "dense+sparse": ("dense", "sparse"), "bm25": ()}
    if retrieval not in table:
        raise ValueError(f"unknown retrieval {retrieval!r}; valid: {', '.join(table)}")
    return table[retrieval]


def encode(model: Any, texts: list[str], role: str, outputs: Sequence[str], batch_size: int | None = None,
           show_progress: bool | None = None) -> Encoded:
    """Encode ``texts`` as queries or passages; sparse outputs need a BGE-M3 model (``encode_multi``)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    if "sparse" in outputs:
        if not hasattr(model, "encode_multi"):
            raise ValueError(f"sparse retrieval needs a model with sparse outputs (BGE-M3); {type(model).__name__} has none")
        out = model.encode_multi(texts, role=role, outputs=tuple(outputs), batch_size=batch_size, show_progress=show_progress)
        return Encoded(None if out.dense is None else np.asarray(out.dense, dtype=np.float32), out.sparse)
    dense = getattr(model, ROLES[role])(texts, batch_size=batch_size, show_progress=show_progress)
    return Encoded(np.asarray(dense, dtype=np.float32))


def encoding_settings(model: Any, role: str, outputs: Sequence[str]) -> dict[str, Any]:
    """Everything about ``model`` that changes what it outputs for ``role`` (for cache keys and result records)."""
    from bgekit import __version__

    prefix = "query" if role == "query" else "passage"
    spec = getattr(model, "spec", None)
    return {
        "class": type(model).__name__,
        "kind": getattr(spec, "kind", None),
        "pooling": getattr(model, "pooling_method", None),
        "normalize": getattr(model, "normalize_embeddings", None),
        "instruction": getattr(model, f"{prefix}_instruction_for_retrieval", None),
        "instruction_format": getattr(model, f"{prefix}_instruction_format", None),
        "max_length": getattr(model, f"{prefix}_max_length", None),
        "dtype": str(getattr(model, "dtype", None)).replace("torch.", ""),
        "truncate_dim": getattr(model, "truncate_dim", None),
        "outputs": list(outputs),
        "documents": "title + ' ' + text, stripped",
        "bgekit": __version__,
    }


# ---------------------------------------------------------------- search

@dataclass
class Indexes:
    """The searchable forms of an encoded corpus (built by :func:`build_indexes`)."""

    dense: Any = None   # bgekit.index.dense.DenseIndex
    sparse: Any = None  # bgekit.index.sparse.SparseIndex


def build_indexes(retrieval: str, corpus: Encoded, factory: str = "Flat", search_params: dict | None = None) -> Indexes:
    """Index what ``retrieval`` needs: a FAISS index over dense vectors and/or an inverted index over sparse ones.

    Args:
        retrieval: "dense", "sparse" or "dense+sparse" (BM25 indexes texts: :class:`BM25Index`).
        corpus: the encoded corpus.
        factory: FAISS index for dense search ("Flat" is exact; e.g. "HNSW32" is approximate).
        search_params: FAISS search parameters, e.g. ``{"efSearch": 256}``.
    """
    from bgekit.index.sparse import SparseIndex

    needs = outputs_for(retrieval)
    if retrieval == "bm25":
        raise ValueError("BM25 indexes texts: use BM25Index")
    sparse = None
    if "sparse" in needs:
        sparse = corpus.sparse if isinstance(corpus.sparse, SparseIndex) else SparseIndex.from_vectors(corpus.sparse)
    return Indexes(_dense_index(corpus.dense, factory, search_params) if "dense" in needs else None, sparse)


def _dense_index(vectors: np.ndarray, factory: str, search_params: dict | None):
    """Exact ("Flat"): search the vectors where they are (a memory map stays on disk). Approximate: a FAISS index
    filled a block at a time (FAISS holds its own copy in memory)."""
    from bgekit.index.dense import DenseIndex, as_matrix

    mapped = isinstance(vectors, np.memmap)  # written by bgekit.eval.stream and checked there
    if factory.strip().lower() == "flat":
        return DenseIndex.over(vectors if mapped else as_matrix(vectors, "corpus embeddings"))
    index = DenseIndex(int(vectors.shape[1]), factory=factory, metric="ip", search_params=search_params)
    for start in range(0, len(vectors), 1 << 16):
        index.add(np.asarray(vectors[start:start + (1 << 16)]))
    return index


def search(retrieval: str, indexes: Indexes, queries: Encoded, k: int, fusion: str = "weighted_sum",
           weights: Sequence[float] = (1.0, 0.3)):
    """Top-k documents per query: ``(scores, indices)``, each (Q, k), best first.

    Args:
        retrieval: "dense", "sparse" or "dense+sparse".
        indexes: from :func:`build_indexes`.
        queries: encoded queries holding what the mode needs.
        k: documents per query, at most the corpus size.
        fusion: for "dense+sparse": "weighted_sum" (of exact dense and sparse scores over the union of both
            top-k lists) or "rrf".
        weights: dense and sparse weights for "weighted_sum" (default 1.0 / 0.3, BGE-M3's hybrid setting).
    """
    from bgekit.index.fusion import fuse

    outputs_for(retrieval)
    if retrieval == "dense":
        return indexes.dense.search(queries.dense, k)
    if retrieval == "sparse":
        return indexes.sparse.search(queries.sparse, k)
    if retrieval == "bm25":
        raise ValueError("BM25 searches texts: use BM25Index.search")
    d_scores, d_ids = indexes.dense.search(queries.dense, k)
    s_scores, s_ids = indexes.sparse.search(queries.sparse, k)
    if fusion == "rrf":
        return fuse("rrf", [(d_scores, d_ids), (s_scores, s_ids)], top_k=k)
    candidates = _union(d_ids, s_ids)  # (Q, m), exact scores for every candidate in both spaces
    lists = [(indexes.dense.score(queries.dense, candidates), candidates),
             (indexes.sparse.score(queries.sparse, candidates), candidates)]
    return fuse(fusion, lists, weights=list(weights), top_k=k)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    rows = [np.unique(np.r_[x[x >= 0], y[y >= 0]]) for x, y in zip(a, b)]
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class BM25Index:
    """BM25 over texts with bm25s (Lucene's BM25 variant).

    Defaults follow Anserini's BEIR "flat" baseline (k1=0.9, b=0.4, English stopwords); stemming uses
    PyStemmer's Snowball English stemmer (Anserini uses Porter); ``stemmer=None`` disables it.

    Example:
        >>> index = BM25Index(["the cat sat", "dogs bark loudly", "a cat and a dog"])
        >>> index.search(["cat"], k=2)[1].tolist()
        [[0, 2]]
    """

    def __init__(self, documents: Iterable[str], k1: float = 0.9, b: float = 0.4, stemmer: str | None = "english",
                 stopwords: str | None = "en", show_progress: bool = False, size: int | None = None):
        check_bm25(k1, b)
        try:
            import bm25s
            from bm25s.tokenization import Tokenizer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("BM25 needs bm25s: pip install 'bgekit[eval]'") from e
        bm25_logger = logging.getLogger("bm25s")
        if bm25_logger.level < logging.INFO:  # bm25s sets its own logger to DEBUG, which floods any root handler
            bm25_logger.setLevel(logging.INFO)
        stem = None
        if stemmer:
            import Stemmer  # PyStemmer

            stem = Stemmer.Stemmer(stemmer).stemWord
        self.show_progress = show_progress
        self.tokenizer = Tokenizer(stemmer=stem, stopwords=stopwords or [])
        # documents may be a generator (a corpus read from its file, with its size): tokenized as it is read
        if size is None and not hasattr(documents, "__len__"):
            documents = list(documents)
        tokens = self.tokenizer.tokenize(iter(documents), update_vocab=True, show_progress=show_progress,
                                         length=len(documents) if size is None else size)
        if not tokens:
            raise ValueError("the corpus is empty: there is nothing to index")
        self.size = len(tokens)
        self.model = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.model.index(tokens, show_progress=show_progress)

    def __len__(self) -> int:
        return self.size

    def search(self, queries: list[str], k: int):
        """``(scores, indices)``, each (Q, k), best first; equal scores: lower document index first."""
        from bgekit.index.dense import check_k

        k = check_k(k, self.size, "corpus")
        tokens = self.tokenizer.tokenize(queries, update_vocab=False, show_progress=self.show_progress)
        ids, scores = self.model.retrieve(tokens, k=k, show_progress=self.show_progress, n_threads=1)
        ids, scores = np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32)
        for row in range(len(ids)):  # bm25s leaves ties in arbitrary order
            order = np.lexsort((ids[row], -scores[row]))
            ids[row], scores[row] = ids[row][order], scores[row][order]
        no_match = scores <= 0  # no query term in the document: not a hit (bm25s pads with such rows)
        ids[no_match], scores[no_match] = -1, -np.inf
        return scores, ids


def to_run(scores: np.ndarray, indices: np.ndarray, doc_ids: Sequence[str], query_ids: Sequence[str], k: int,
           drop: Mapping[str, set[str]] | None = None) -> dict[str, dict[str, float]]:
    """Search arrays -> ``{query id: {doc id: score}}`` with at most k documents per query.

    ``drop`` maps a query id to doc ids removed before the cut (the query's own id under BEIR/MTEB's rule,
    BRIGHT's excluded ids); search ``k + len(drop set)`` documents so that k remain.
    """
    run = {}
    for row, qid in enumerate(query_ids):
        banned = drop.get(qid, ()) if drop else ()
        hits: dict[str, float] = {}
        for s, i in zip(scores[row].tolist(), indices[row].tolist()):
            if i < 0 or doc_ids[i] in banned:
                continue
            hits[doc_ids[i]] = s
            if len(hits) == k:
                break
        run[qid] = hits
    return run


def rerank(run: Mapping[str, Mapping[str, float]], queries: Mapping[str, str], doc_texts: Any,
           reranker: Any, top_k: int = 100, batch_size: int | None = None,
           show_progress: bool | None = None, interpolation: float = 0.0) -> dict[str, dict[str, float]]:
    """Rescore each query's top_k documents with a reranker; only those documents are kept (FlagEmbedding's way).

    Args:
        run: first-stage results.
        queries, doc_texts: id -> text; ``doc_texts`` may also be a function from doc ids to such a mapping
            (``RetrievalData.texts_of``), asked once for exactly the documents to rerank.
        reranker: any bgekit reranker: an object with ``compute_score(pairs)`` (FlagReranker and friends) or
            ``score(pairs)`` (the native Reranker), returning one float per pair.
        top_k: documents per query to rerank.
        batch_size: passed to the reranker when given.
        show_progress: the scoring progress bar, for rerankers built on :class:`bgekit.Reranker` (None: its default).
        interpolation: weight ``w`` of the first stage in the final score. 0 (default) keeps the reranker's raw
            scores; otherwise each query's two score lists over its top_k are z-normalised and the final score is
            ``(1 - w) * z(reranker) + w * z(first stage)`` (score interpolation, as in Pyserini's reranking).
    """
    check_interpolation(interpolation, "rerank interpolation")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"rerank top_k must be a positive integer, got {top_k!r}")
    score_fn = getattr(reranker, "compute_score", None) or getattr(reranker, "score", None)
    if score_fn is None:
        raise TypeError(f"{type(reranker).__name__} is not a reranker: it has neither compute_score nor score")
    from bgekit.eval.metrics import ranked

    keys = [(q, d) for q, res in run.items() for d in ranked(res)[:top_k]]
    if not keys:
        return {q: {} for q in run}
    if callable(doc_texts):  # only the texts reranked, e.g. read by offset from the corpus file
        doc_texts = doc_texts(d for _, d in keys)
    pairs = [[queries[q], doc_texts[d]] for q, d in keys]
    from bgekit.reranker import Reranker

    kwargs: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if isinstance(reranker, Reranker):  # the native score: same scores as compute_score, and a switchable bar
        score_fn, kwargs["show_progress"] = reranker.score, show_progress
    scores = score_fn(pairs, **kwargs)
    scores = np.atleast_1d(np.asarray(scores, dtype=np.float64))
    if len(scores) != len(pairs):
        raise RuntimeError(f"the reranker returned {len(scores)} scores for {len(pairs)} pairs")
    out: dict[str, dict[str, float]] = {q: {} for q in run}
    for (q, d), s in zip(keys, scores.tolist()):
        out[q][d] = s
    if interpolation:
        for q, reranked in out.items():
            docs = list(reranked)
            mixed = (1.0 - interpolation) * _zscore([reranked[d] for d in docs]) + \
                interpolation * _zscore([run[q][d] for d in docs])
            out[q] = dict(zip(docs, mixed.tolist()))
    return out


def check_interpolation(value: Any, name: str) -> None:
    """Raise ValueError unless ``value`` is a number from 0 to 1 (a first-stage weight for :func:`rerank`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")


def _zscore(values: Sequence[float]) -> np.ndarray:
    """(x - mean) / std over one query's list; a constant list becomes zeros."""
    x = np.asarray(values, dtype=np.float64)
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)
