"""Index benchmarks: build and search latency of the persisted index.

1. ``synthetic``: ``--n`` (100,000) unit vectors of 384 dimensions (random, intrinsic dimension 48), persisted
   with an exact (Flat) and an approximate (HNSW32, efSearch 64 and 256) FAISS index. Queries are noisy copies of
   random documents. Reports build and open time,
   single-query latency p50/p99 of the FAISS search alone and of a full ``Searcher.search`` (documents fetched
   from SQLite, hits built), a filtered search (exact over the matching tenth), and HNSW recall@10 vs exact.
   The "model" is a stub that hands out the precomputed vectors, so encoding is not timed.
2. ``scifact``: hybrid search over SciFact (5,183 documents, 300 test queries) with the tiny random BGE-M3
   fixture from ../shared/golden (dense + sparse + ColBERT): index build time and per-query latency of each
   mode, query encoding included. The fixture's weights are random: the numbers are latency, not quality.

    python benchmarks/bench_index.py [--n 100000] [--queries 1000] [--parts synthetic,scifact] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact")
M3 = os.path.join(HERE, "..", "..", "shared", "golden", "models", "m3")


class VectorModel:
    """A stand-in embedder over precomputed vectors: query text "q<i>" encodes to ``queries[i]``."""

    def __init__(self, dim: int, queries: np.ndarray):
        from bgekit.registry import ModelSpec

        self.spec, self.dim, self.queries = ModelSpec("encoder", "mean"), dim, queries
        self.model_name_or_path, self.pooling_method, self.normalize_embeddings, self.truncate_dim = "synthetic", "mean", True, None
        self.passage_instruction_for_retrieval = self.query_instruction_for_retrieval = None
        self.passage_instruction_format = self.query_instruction_format = "{}{}"
        self.passage_max_length = 512
        self._probe = np.random.default_rng(7).standard_normal((1, dim)).astype(np.float32)

    def encode(self, texts, **_):
        return self._probe

    def encode_corpus(self, texts, **_):
        raise NotImplementedError("pass vectors")

    def encode_queries(self, texts, **_):
        return self.queries[[int(t[1:]) for t in texts]]


def percentiles(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def synthetic_vectors(n: int, n_queries: int, dim: int, latent: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with a low intrinsic dimension (like real embeddings, unlike uniform noise), and queries that
    are noisy copies of random documents."""
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((latent, dim)).astype(np.float32)
    docs = rng.standard_normal((n, latent)).astype(np.float32) @ mix
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[rng.integers(0, n, n_queries)] + 0.02 * rng.standard_normal((n_queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return docs, queries


def _time_searches(store, model, queries: np.ndarray) -> tuple[dict, np.ndarray]:
    from bgekit.index.search import Searcher

    searcher = Searcher(store, model)
    faiss_times, full_times, filter_times, ids = [], [], [], []
    for i in range(len(queries)):
        t = time.perf_counter()
        _, found = store.dense.search(queries[i:i + 1], 10)
        faiss_times.append(time.perf_counter() - t)
        ids.append(found[0])
        t = time.perf_counter()
        searcher.search(f"q{i}", top_k=10)
        full_times.append(time.perf_counter() - t)
    for i in range(min(len(queries), 200)):
        t = time.perf_counter()
        searcher.search(f"q{i}", top_k=10, filter={"bucket": 3})
        filter_times.append(time.perf_counter() - t)
    row = {"faiss_search": percentiles(faiss_times), "searcher_search": percentiles(full_times),
           "filtered_search_one_tenth": percentiles(filter_times)}
    return row, np.array(ids)


def synthetic(n: int, n_queries: int, dim: int, root: str, ef_values: list[int]) -> dict:
    from bgekit.index.store import Vectors, build_index, open_index

    docs, queries = synthetic_vectors(n, n_queries, dim)
    model = VectorModel(dim, queries)
    documents = [{"id": f"s{i}", "text": f"synthetic document {i}", "bucket": i % 10} for i in range(n)]
    out, exact_ids = {}, None
    for factory in ("Flat", "HNSW32"):
        path = os.path.join(root, factory)
        t = time.perf_counter()
        build_index(path, model, documents, vectors=Vectors(docs), factory=factory, show_progress=False)
        built = time.perf_counter() - t
        for ef in ([None] if factory == "Flat" else ef_values):
            t = time.perf_counter()
            store = open_index(path, search_params={"efSearch": ef} if ef else None)
            opened = time.perf_counter() - t
            row, ids = _time_searches(store, model, queries)
            row = {"build_s": round(built, 2), "open_s": round(opened, 2), **row,
                   "disk_mb": round(sum(os.path.getsize(os.path.join(store.folder, f)) for f in os.listdir(store.folder)) / 1e6, 1)}
            if exact_ids is None:
                exact_ids = ids
            else:
                row["recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])), 4)
            name = factory if ef is None else f"{factory},efSearch={ef}"
            out[name] = row
            print(f"{name:>20}: {json.dumps(row)}", flush=True)
            del store
    return {"n": n, "dim": dim, "queries": n_queries, **out}


def scifact(root: str) -> dict:
    from bgekit.index.documents import read_corpus
    from bgekit.index.search import Searcher
    from bgekit.index.store import build_index
    from bgekit.m3 import M3Embedder

    with open(os.path.join(SCIFACT, "queries.jsonl"), encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    with open(os.path.join(SCIFACT, "qrels", "test.tsv"), encoding="utf-8") as f:
        test = list(dict.fromkeys(line.split("\t")[0] for line in f.read().splitlines()[1:]))
    texts = [queries[q] for q in test]
    model = M3Embedder(M3, devices="cpu")
    docs = read_corpus(os.path.join(SCIFACT, "corpus.jsonl"))
    t = time.perf_counter()
    store = build_index(os.path.join(root, "scifact"), model, docs, colbert=True, show_progress=False)
    out = {"documents": store.count, "queries": len(texts), "build_s": round(time.perf_counter() - t, 1)}
    searcher = Searcher(store, model)
    times = []
    for q in texts:
        t = time.perf_counter()
        model.encode_multi([q], role="query")
        times.append(time.perf_counter() - t)
    out["encode_query_only"] = percentiles(times)
    modes = {"dense": {"mode": "dense"}, "sparse": {"mode": "sparse"}, "hybrid_weighted_sum": {"mode": "hybrid"},
             "hybrid_rrf": {"mode": "hybrid", "fusion": "rrf"}, "hybrid_colbert": {"mode": "hybrid", "colbert": True}}
    for name, options in modes.items():
        times = []
        for q in texts:
            t = time.perf_counter()
            searcher.search(q, top_k=10, **options)
            times.append(time.perf_counter() - t)
        out[name] = percentiles(times)
    print(f"scifact: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--parts", default="synthetic,scifact")
    ap.add_argument("--ef-search", default="64,256", help="HNSW efSearch values to time")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; 1 avoids thread stalls when other processes share the CPU")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    root = tempfile.mkdtemp(prefix="bgekit-bench-index-")
    results = {}
    try:
        if "synthetic" in args.parts:
            results["synthetic"] = synthetic(args.n, args.queries, args.dim, root,
                                             [int(x) for x in args.ef_search.split(",")])
        if "scifact" in args.parts:
            results["scifact"] = scifact(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
