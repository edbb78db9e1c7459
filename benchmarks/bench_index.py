"""Index benchmarks: build and search latency of the persisted index.

1. ``synthetic``: ``--n`` (100,000) unit vectors of 384 dimensions (random, intrinsic dimension 48), persisted
   with an exact (Flat) and an approximate (HNSW32, efSearch 64 and 256) FAISS index. Queries are noisy copies of
   random documents. Reports build and open time,
   single-query latency p50/p99 of the FAISS search alone and of a full ``Searcher.search`` (documents fetched
   from SQLite, hits built), a filtered search (exact over the matching tenth), and HNSW recall@10 vs exact.
   The "model" is a stub that hands out the precomputed vectors, so encoding is not timed.
2. ``growth``: an index that grows. Synthetic 384-d dense vectors plus sparse lexical weights (a stub BGE-M3:
   no model runs) for ``--growth-sizes`` (100,000 and 1,000,000) documents, each written as one segment by
   bgekit's streaming segment writer. Times ``add`` of 1,000 documents (three times: each writes a new segment;
   vectors given) and prints the ratio of the largest size's median to the smallest's (target <= 1.5: an add
   costs what it writes, not the index size). Then deletes 1,000 documents (tombstones), times dense and hybrid
   search (p50) over the segments, compacts (timed), and times the same searches again.
3. ``scifact``: hybrid search over SciFact (5,183 documents, 300 test queries) with the tiny random BGE-M3
   fixture from ../shared/golden (dense + sparse + ColBERT): index build time and per-query latency of each
   mode, query encoding included. The fixture's weights are random: the numbers are latency, not quality.

    python benchmarks/bench_index.py [--n 100000] [--queries 1000] [--parts synthetic,growth,scifact] [--json out.json]
    python benchmarks/bench_index.py --parts growth [--growth-sizes 100000,1000000]
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
                   "disk_mb": round(store.disk_bytes() / 1e6, 1)}
            if exact_ids is None:
                exact_ids = ids
            else:
                row["recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])), 4)
            name = factory if ef is None else f"{factory},efSearch={ef}"
            out[name] = row
            print(f"{name:>20}: {json.dumps(row)}", flush=True)
            del store
    return {"n": n, "dim": dim, "queries": n_queries, **out}


class SyntheticM3:
    """A stand-in BGE-M3 (dense + sparse) over synthetic vectors: query "q<i>" encodes to query i."""

    def __init__(self, dim: int, n_queries: int, vocab: int):
        from bgekit.registry import ModelSpec

        self.spec, self.dim, self.colbert_vector_dim, self.vocab = ModelSpec("m3", "cls"), dim, dim, vocab
        self.model_name_or_path, self.pooling_method, self.normalize_embeddings, self.truncate_dim = "synthetic-m3", "cls", True, None
        self.passage_instruction_for_retrieval = self.query_instruction_for_retrieval = None
        self.passage_instruction_format = self.query_instruction_format = "{}{}"
        self.passage_max_length = 512
        self._probe = np.random.default_rng(7).standard_normal((1, dim)).astype(np.float32)
        self.queries = synthetic_chunk(10**9, n_queries, dim, vocab)[1]

    def encode(self, texts, **_):
        return self._probe

    def encode_corpus(self, texts, **_):
        raise NotImplementedError("pass vectors")

    def encode_multi(self, texts, role="query", outputs=("dense", "sparse"), **_):
        from bgekit.index.store import Vectors

        rows = [int(t[1:]) for t in texts]
        return Vectors(self.queries.dense[rows], [self.queries.sparse[r] for r in rows], None)


def synthetic_chunk(start: int, n: int, dim: int, vocab: int, nnz: int = 24, latent: int = 48):
    """Documents start..start+n-1: ids, short texts, a "bucket" field, unit dense vectors of low intrinsic
    dimension and ``nnz`` sparse weights over Zipf-like token ids. Deterministic per (start, n)."""
    from bgekit.index.documents import Documents
    from bgekit.index.store import Vectors
    from bgekit.types import SparseVector

    rng = np.random.default_rng(start)
    mix = np.random.default_rng(0).standard_normal((latent, dim)).astype(np.float32)
    dense = rng.standard_normal((n, latent)).astype(np.float32) @ mix
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    tokens = np.minimum((rng.pareto(1.1, (n, nnz)) * 50).astype(np.int64), vocab - 1)
    weights = rng.uniform(0.05, 0.4, (n, nnz)).astype(np.float32)
    sparse = []
    for t, w in zip(tokens, weights):
        t, first = np.unique(t, return_index=True)
        sparse.append(SparseVector(t, w[first]))
    ids = [f"s{i}" for i in range(start, start + n)]
    docs = Documents(ids, [f"synthetic document {i}" for i in range(start, start + n)], [None] * n,
                     [{"bucket": i % 10} for i in range(start, start + n)])
    return docs, Vectors(dense, sparse, None)


def bulk_index(path: str, model, n: int, dim: int, chunk: int = 50_000) -> None:
    """Write an n-document index as one segment, chunk by chunk, with bgekit's segment writer (as
    ``build_index`` does for a streamed corpus): vectors are never all in memory."""
    from bgekit.index import generation as G
    from bgekit.index.model_info import ModelInfo
    from bgekit.index.segment import SegmentWriter

    manifest = {"model": ModelInfo.of(model).to_json(), "outputs": ["dense", "sparse"],
                "dense": {"factory": "Flat", "metric": "ip", "search_params": {}}}
    with G.write_lock(path), SegmentWriter(path, 1, manifest) as writer:
        for start in range(0, n, chunk):
            writer.append(*synthetic_chunk(start, min(chunk, n - start), dim, model.vocab))
        entry = writer.commit()
        G.commit_generation(path, 1, {**manifest, "segments": [entry]}, {})


def _p50_searches(store, model, n_queries: int) -> dict:
    from bgekit.index.search import Searcher

    searcher, out = Searcher(store, model), {}
    for mode in ("dense", "hybrid"):
        times = []
        for i in range(n_queries):
            t = time.perf_counter()
            searcher.search(f"q{i}", top_k=10, mode=mode)
            times.append(time.perf_counter() - t)
        out[mode] = percentiles(times)
    return out


def growth(sizes: list[int], dim: int, n_queries: int, root: str, vocab: int = 30_000) -> dict:
    from bgekit.index.store import open_index

    model, out = SyntheticM3(dim, n_queries, vocab), {}
    for n in sizes:
        path = os.path.join(root, f"growth-{n}")
        t = time.perf_counter()
        bulk_index(path, model, n, dim)
        row = {"build_s": round(time.perf_counter() - t, 1)}
        t = time.perf_counter()
        store = open_index(path)
        row["open_s"] = round(time.perf_counter() - t, 2)
        adds = []
        for k in range(3):
            docs, vectors = synthetic_chunk(n + 1000 * k, 1000, dim, vocab)
            t = time.perf_counter()
            store.add(docs, vectors=vectors)
            adds.append(time.perf_counter() - t)
        row["add_1000_s"] = [round(a, 3) for a in adds]
        row["add_1000_median_s"] = round(float(np.median(adds)), 3)
        gone = [f"s{i}" for i in np.random.default_rng(1).choice(n, 1000, replace=False)]
        t = time.perf_counter()
        store.delete(gone)
        row["delete_1000_s"] = round(time.perf_counter() - t, 3)
        row["before_compaction"] = {"segments": len(store.segments), "deleted": store.deleted,
                                    **_p50_searches(store, model, n_queries)}
        t = time.perf_counter()
        store.compact()
        row["compact_s"] = round(time.perf_counter() - t, 1)
        row["after_compaction"] = {"segments": len(store.segments), "deleted": store.deleted,
                                   **_p50_searches(store, model, n_queries)}
        out[str(n)] = row
        print(f"growth n={n}: {json.dumps(row)}", flush=True)
        del store
        shutil.rmtree(path, ignore_errors=True)
    small, large = out[str(sizes[0])], out[str(sizes[-1])]
    out["add_ratio"] = round(large["add_1000_median_s"] / small["add_1000_median_s"], 2)
    print(f"growth: adding 1,000 documents to {sizes[-1]:,} vs {sizes[0]:,} documents takes "
          f"{out['add_ratio']}x as long (target <= 1.5)", flush=True)
    return out


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
    ap.add_argument("--parts", default="synthetic,growth,scifact")
    ap.add_argument("--growth-sizes", default="100000,1000000", help="index sizes the growth part adds to")
    ap.add_argument("--growth-queries", type=int, default=30, help="queries timed before and after compaction")
    ap.add_argument("--ef-search", default="64,256", help="HNSW efSearch values to time")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and FAISS CPU threads; 1 avoids thread stalls when other processes share the CPU")
    args = ap.parse_args()
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)  # FAISS's OpenMP threads stall badly on a shared, busy CPU
    root = tempfile.mkdtemp(prefix="bgekit-bench-index-")
    results = {}
    try:
        if "synthetic" in args.parts:
            results["synthetic"] = synthetic(args.n, args.queries, args.dim, root,
                                             [int(x) for x in args.ef_search.split(",")])
        if "growth" in args.parts:
            results["growth"] = growth([int(x) for x in args.growth_sizes.split(",")], args.dim, args.growth_queries, root)
        if "scifact" in args.parts:
            results["scifact"] = scifact(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
