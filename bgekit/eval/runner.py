"""Evaluate a model (and optionally a reranker) on retrieval collections, timing every stage.

Example (BM25 runs in seconds; a dense model, e.g. ``model="all-MiniLM-L6-v2"`` (0.6451), encodes the corpus first):
    >>> from bgekit.eval import EvalConfig, evaluate_beir
    >>> report = evaluate_beir(["../shared/data/scifact"], config=EvalConfig(retrieval="bm25", show_progress=False))
    >>> round(report["datasets"]["scifact"]["splits"]["test"]["metrics"]["ndcg@10"], 4)
    0.6762
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from bgekit.errors import positive_int, ModelMismatch, UsageError
from bgekit.eval.data import RetrievalData, load_folder
from bgekit.eval.metrics import DEFAULT_K, RETRIEVAL_METRICS, check_k_values, evaluate_run, qa_recall, ranked
from bgekit.eval.retrieval import (
    RETRIEVALS, BM25Index, build_indexes, encode, encoding_settings, check_bm25, check_interpolation,
    outputs_for, rerank, search, to_run,
)
from bgekit.eval.stream import EVAL_CHUNK, encode_corpus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate (everything except the model, the reranker and the data).

    Attributes:
        retrieval: "dense", "sparse", "dense+sparse" (BGE-M3) or "bm25".
        k_values: metric cutoffs; metrics: any of "ndcg", "map", "recall", "precision", "mrr".
        search_top_k: documents retrieved per query (capped at the corpus size, with a log message).
        drop_self: drop a retrieved document whose id equals the query id (BEIR/MTEB convention; on by default).
        batch_size: encoding batch size (None: the model's default). Scores do not depend on it.
        index_factory / search_params: FAISS index ("Flat" = exact inner product) and its search parameters.
        fusion / weights: "weighted_sum" (dense, sparse weights) or "rrf", for "dense+sparse".
        rerank_top_k / rerank_batch_size: how many first-stage hits the reranker rescores, and its batch size.
        rerank_interpolation: weight of the first-stage score in the reranked score (0: the reranker alone; see
            :func:`bgekit.eval.retrieval.rerank`).
        bm25_k1 / bm25_b / bm25_stemmer: BM25 settings (Anserini's BEIR baseline by default).
        cache_dir: cache corpus embeddings here (None: no cache).
        show_progress: progress bars while encoding.
    """

    retrieval: str = "dense"
    k_values: tuple[int, ...] = DEFAULT_K
    metrics: tuple[str, ...] = tuple(RETRIEVAL_METRICS)
    search_top_k: int = 1000
    drop_self: bool = True
    batch_size: int | None = None
    index_factory: str = "Flat"
    search_params: dict | None = None
    fusion: str = "weighted_sum"
    weights: tuple[float, ...] = (1.0, 0.3)
    rerank_top_k: int = 100
    rerank_batch_size: int | None = None
    rerank_interpolation: float = 0.0
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    bm25_stemmer: str | None = "english"
    cache_dir: str | None = None
    show_progress: bool = True

    def __post_init__(self):
        outputs_for(self.retrieval)
        object.__setattr__(self, "k_values", tuple(check_k_values(list(self.k_values))))
        bad = [m for m in self.metrics if m not in RETRIEVAL_METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; valid: {', '.join(RETRIEVAL_METRICS)}")
        for name in ("search_top_k", "rerank_top_k", "batch_size", "rerank_batch_size"):
            value = getattr(self, name)
            if value is None and name.endswith("batch_size"):
                continue  # None: the model's own batch size
            positive_int(value, name)
        check_interpolation(self.rerank_interpolation, "rerank_interpolation")
        if self.fusion not in ("weighted_sum", "rrf"):
            raise ValueError(f"unknown fusion {self.fusion!r}; valid: weighted_sum, rrf")
        if len(self.weights) != 2:
            raise ValueError(f"weights must be two numbers (dense, sparse), got {self.weights!r}")
        check_bm25(self.bm25_k1, self.bm25_b)
        if self.cache_dir is not None and os.path.exists(self.cache_dir) and not os.path.isdir(self.cache_dir):
            raise UsageError(f"cache_dir {self.cache_dir!r} (--cache-dir) is a file; give a folder for the cache")


def check_model_fits(model: Any, config: EvalConfig) -> None:
    """Before any encoding: the retrieval mode fits the model, and the FAISS settings build an index.

    Raises:
        ModelMismatch: sparse retrieval with a model that has no sparse output.
        ValueError: a FAISS factory string or search parameter that FAISS refuses.
    """
    outputs = outputs_for(config.retrieval)
    if not outputs:
        return
    if model is None:
        raise UsageError(f"retrieval {config.retrieval!r} needs an embedder")
    if "sparse" in outputs and not hasattr(model, "encode_multi"):
        name = getattr(model, "model_name_or_path", type(model).__name__)
        raise ModelMismatch(f"retrieval {config.retrieval!r} (--retrieval) needs sparse weights, which BGE-M3 models "
                            f"give; {name!r} is a dense-only embedder: use --retrieval dense or bm25")
    if "dense" in outputs:
        from bgekit.index.dense import DenseIndex

        try:
            DenseIndex(model.dim, factory=config.index_factory, metric="ip", search_params=config.search_params)
        except (ValueError, RuntimeError, TypeError) as e:
            raise UsageError(f"--index-factory {config.index_factory!r} / --search-param: FAISS refuses them for "
                             f"{model.dim}-dimensional vectors ({(str(e).strip().splitlines() or [''])[0]})") from None


@dataclass
class SplitResult:
    """Metrics, timings and provenance for one split of one dataset."""

    dataset: str
    split: str
    metrics: dict[str, float]
    timings: dict[str, float]
    num_queries: int
    num_docs: int
    fingerprint: str
    source: str
    cache_hit: bool = False
    run: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("run")
        return out


def describe_model(model: Any) -> dict[str, Any] | None:
    """What identifies an embedder or reranker in a results file (name, files' hash, instructions, lengths, dtype)."""
    if model is None:
        return None
    from bgekit.eval.cache import model_fingerprint

    path = getattr(model, "path", None)
    info = {"name": getattr(model, "model_name_or_path", type(model).__name__), "class": type(model).__name__,
            "path": path, "fingerprint": model_fingerprint(path) if isinstance(path, str) else None}
    for role in ("query", "passage"):
        settings = encoding_settings(model, role, ())
        info.update({f"{role}_instruction": settings["instruction"], f"{role}_instruction_format": settings["instruction_format"],
                     f"{role}_max_length": settings["max_length"]})
    for key in ("kind", "pooling", "normalize", "dtype", "truncate_dim"):
        info[key] = settings[key]
    if hasattr(model, "max_length"):
        info["max_length"] = model.max_length
    return info


def _retrieve(data: RetrievalData, model: Any, config: EvalConfig, times: dict[str, float]) -> tuple[dict, bool]:
    """First-stage retrieval: returns the run and whether the corpus came from the cache."""
    qids = list(data.queries)
    drop = {q: ({q} if config.drop_self else set()) | set(data.excluded.get(q, ())) for q in qids}
    k = min(config.search_top_k, len(data.doc_ids))
    if config.search_top_k > len(data.doc_ids):
        logger.warning("search_top_k=%d is larger than the corpus of %s (%d documents): retrieving all of them",
                       config.search_top_k, data.name, len(data.doc_ids))
    k_search = min(k + max(len(d) for d in drop.values()), len(data.doc_ids))
    hit = False
    t = time.perf_counter()
    if config.retrieval == "bm25":
        docs = (d for chunk in data.document_chunks(EVAL_CHUNK) for d in chunk)  # read from the file as tokenized
        index = BM25Index(docs, k1=config.bm25_k1, b=config.bm25_b, stemmer=config.bm25_stemmer, size=len(data.doc_ids))
        times["index"] = time.perf_counter() - t
        t = time.perf_counter()
        scores, ids = index.search([data.queries[q] for q in qids], k_search)
    else:
        if model is None:
            raise ValueError(f"retrieval {config.retrieval!r} needs a model")
        outputs = outputs_for(config.retrieval)
        with tempfile.TemporaryDirectory(prefix="bgekit-eval-") as scratch:  # vectors on disk, memory-mapped
            corpus, hit = encode_corpus(model, data, outputs, config, scratch)
            queries = encode(model, [data.queries[q] for q in qids], "query", outputs, config.batch_size,
                             config.show_progress)
            times["encode"] = time.perf_counter() - t
            t = time.perf_counter()
            indexes = build_indexes(config.retrieval, corpus, config.index_factory, config.search_params)
            times["index"] = time.perf_counter() - t
            t = time.perf_counter()
            scores, ids = search(config.retrieval, indexes, queries, k_search, config.fusion, config.weights)
            del indexes, corpus  # the memory maps close before their folder goes
    run = to_run(scores, ids, data.doc_ids, qids, k, drop)
    times["search"] = time.perf_counter() - t
    return run, hit


def evaluate_retrieval(data: RetrievalData, model: Any = None, reranker: Any = None,
                       config: EvalConfig | None = None) -> SplitResult:
    """Retrieve (and rerank) for every query of ``data`` and score the run.

    Args:
        data: one split of a collection (see :func:`bgekit.eval.data.load_folder`).
        model: an embedder (any bgekit embedder; BGE-M3 for sparse modes); None for BM25.
        reranker: optional reranker rescoring each query's ``config.rerank_top_k`` first-stage hits.
        config: an :class:`EvalConfig`.

    Returns:
        A :class:`SplitResult` (metrics such as "ndcg@10", per-stage timings in seconds, the run itself).
    """
    config = config or EvalConfig()
    check_model_fits(model, config)
    times = {"encode": 0.0, "index": 0.0, "search": 0.0, "rerank": 0.0, "metrics": 0.0}
    start = time.perf_counter()
    run, hit = _retrieve(data, model, config, times)
    if reranker is not None:
        t = time.perf_counter()
        run = rerank(run, data.queries, data.texts_of, reranker, config.rerank_top_k, config.rerank_batch_size,
                     show_progress=None if config.show_progress else False,
                     interpolation=config.rerank_interpolation)
        times["rerank"] = time.perf_counter() - t
    t = time.perf_counter()
    if data.answers is not None:
        texts = data.texts_of(d for res in run.values() for d in res)
        metrics = qa_recall({q: [texts[d] for d in ranked(res)] for q, res in run.items()}, data.answers, config.k_values)
    else:
        metrics = evaluate_run(data.qrels, run, config.k_values, config.metrics)
    times["metrics"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - start
    return SplitResult(data.name, data.split, metrics, times, len(data.queries), len(data.doc_ids), data.fingerprint,
                       data.source, hit, run)


def make_report(results: Sequence[SplitResult], model: Any, reranker: Any, config: EvalConfig) -> dict[str, Any]:
    """The results-file structure: provenance first, then ``datasets -> name -> splits -> split -> result``."""
    from bgekit import __version__

    report: dict[str, Any] = {
        "bgekit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": describe_model(model),
        "reranker": describe_model(reranker),
        "config": dataclasses.asdict(config),
        "datasets": {},
    }
    for r in results:
        entry = report["datasets"].setdefault(r.dataset, {"source": r.source, "splits": {}})
        entry["splits"][r.split] = r.to_json()
    return report


def evaluate_beir(dataset_dirs: Sequence[str], model: Any = "all-MiniLM-L6-v2", splits: Sequence[str] = ("test",),
                  reranker: Any = None, config: EvalConfig | None = None, output: str | None = None,
                  layout: str = "auto", model_kwargs: dict | None = None, reranker_kwargs: dict | None = None) -> dict:
    """Evaluate on local BEIR-layout (or custom-layout) folders; the Python side of ``bgekit eval beir``.

    Args:
        dataset_dirs: dataset folders.
        model: an embedder object or a name/folder loaded with :func:`bgekit.loading.load_embedder`
            (``model_kwargs`` go to it); ignored for BM25.
        splits: qrels splits to evaluate in each folder.
        reranker: a reranker object, or a name/folder loaded with FlagAutoReranker (``reranker_kwargs``).
        config: an :class:`EvalConfig`.
        output: write the report JSON here (atomically).
        layout: "auto", "beir" or "custom".

    Returns:
        The report dict (see :func:`make_report`).
    """
    config = config or EvalConfig()
    datasets = [load_folder(d, split=s, layout=layout) for d in dataset_dirs for s in splits]  # fail fast on bad data
    if config.retrieval == "bm25":
        model = None
    elif isinstance(model, str):
        from bgekit.loading import load_embedder

        model = load_embedder(model, **(model_kwargs or {}))
    if isinstance(reranker, str):
        from bgekit.compat.reranker import FlagAutoReranker

        reranker = FlagAutoReranker.from_finetuned(reranker, **(reranker_kwargs or {}))
    results = [evaluate_retrieval(d, model, reranker, config) for d in datasets]
    report = make_report(results, model, reranker, config)
    if output:
        from bgekit.eval.report import write_json

        write_json(output, report)
    return report


__all__ = ["EvalConfig", "SplitResult", "evaluate_retrieval", "evaluate_beir", "make_report", "describe_model",
           "encode_corpus", "RETRIEVALS"]
