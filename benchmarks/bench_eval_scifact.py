"""Full SciFact (test) evaluation with all-MiniLM-L6-v2 on CPU, per stage, in fp32 and bf16; plus BM25.

    python benchmarks/bench_eval_scifact.py [--dataset-dir ../shared/data/scifact] [--dtype fp32 bf16]
        [--batch-size 64] [--output bench.json]

Prints for each run: per-stage wall times (encode, index, search, metrics), the share of search + metrics in
the total (must stay under 5%: encoding dominates), nDCG@10 / Recall@100 against MTEB's published values
(0.6451 / 0.925, tolerance 0.002), bf16's nDCG@10 gap to fp32 (must be <= 0.003), and BM25 against
Anserini's flat baseline (0.6789, tolerance 0.015). A second pass reads the corpus embeddings from the cache
(metrics must be identical) and a third keeps self-hits, to show what the BEIR/MTEB drop-self rule changes.
Exit status 1 if a check fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PUBLISHED = {"ndcg@10": 0.6451, "recall@100": 0.925}
BM25_NDCG = 0.6789


def _stages(result) -> str:
    t = result.timings
    share = (t["search"] + t["metrics"]) / t["total"]
    return (f"encode {t['encode']:.2f}s | index {t['index']:.3f}s | search {t['search']:.3f}s | "
            f"metrics {t['metrics']:.3f}s | total {t['total']:.2f}s | search+metrics {100 * share:.2f}% of total")


def main() -> int:
    from bgekit.loading import load_embedder
    from bgekit.eval import EvalConfig, evaluate_retrieval, load_folder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir", default=os.path.join(HERE, "..", "..", "shared", "data", "scifact"))
    parser.add_argument("--dtype", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help="also write the numbers as JSON")
    args = parser.parse_args()

    data = load_folder(args.dataset_dir, split="test")
    print(f"SciFact test: {len(data.queries)} queries, {len(data.doc_ids)} documents; fingerprint {data.fingerprint[:16]}")
    failures, summary = [], {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for dtype in args.dtype:
            t = time.perf_counter()
            model = load_embedder("all-MiniLM-L6-v2", dtype=dtype)
            load_s = time.perf_counter() - t
            config = EvalConfig(batch_size=args.batch_size, cache_dir=os.path.join(cache_dir, dtype), show_progress=False)
            cold = evaluate_retrieval(data, model, config=config)
            cached = evaluate_retrieval(data, model, config=config)
            kept = evaluate_retrieval(data, model, config=EvalConfig(batch_size=args.batch_size, cache_dir=config.cache_dir,
                                                                     drop_self=False, show_progress=False))
            m = cold.metrics
            print(f"\n[{dtype}] model load {load_s:.2f}s (max length {model.passage_max_length})")
            print(f"[{dtype}] {_stages(cold)}")
            print(f"[{dtype}] ndcg@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}  mrr@10 {m['mrr@10']:.4f}  "
                  f"map@10 {m['map@10']:.4f}  precision@10 {m['precision@10']:.4f}")
            print(f"[{dtype}] cached rerun: identical metrics = {cached.metrics == m} (cache hit {cached.cache_hit}, "
                  f"total {cached.timings['total']:.2f}s)")
            print(f"[{dtype}] with self-hits kept: ndcg@10 {kept.metrics['ndcg@10']:.4f} recall@100 {kept.metrics['recall@100']:.4f}")
            t = cold.timings
            if (t["search"] + t["metrics"]) / t["total"] >= 0.05:
                failures.append(f"{dtype}: search + metrics are not under 5% of the total")
            if cached.metrics != m or not cached.cache_hit:
                failures.append(f"{dtype}: the cached run differs")
            if dtype == "fp32":
                for key, ref in PUBLISHED.items():
                    if abs(m[key] - ref) > 0.002:
                        failures.append(f"fp32 {key} {m[key]:.4f} is not within 0.002 of {ref}")
            summary[dtype] = {"metrics": m, "timings": cold.timings, "load_s": load_s, "kept_self": kept.metrics}
    if "fp32" in summary and "bf16" in summary:
        gap = abs(summary["bf16"]["metrics"]["ndcg@10"] - summary["fp32"]["metrics"]["ndcg@10"])
        speed = summary["fp32"]["timings"]["total"] / summary["bf16"]["timings"]["total"]
        print(f"\nbf16 vs fp32: ndcg@10 gap {gap:.4f} (limit 0.003); bf16 total {speed:.2f}x faster")
        if gap > 0.003:
            failures.append(f"bf16 ndcg@10 differs from fp32 by {gap:.4f} > 0.003")
    bm25 = evaluate_retrieval(data, config=EvalConfig(retrieval="bm25"))
    print(f"\n[bm25] {_stages(bm25)}")
    print(f"[bm25] ndcg@10 {bm25.metrics['ndcg@10']:.4f} (Anserini flat {BM25_NDCG})  recall@100 {bm25.metrics['recall@100']:.4f}")
    if abs(bm25.metrics["ndcg@10"] - BM25_NDCG) > 0.015:
        failures.append(f"bm25 ndcg@10 {bm25.metrics['ndcg@10']:.4f} is not within 0.015 of {BM25_NDCG}")
    summary["bm25"] = {"metrics": bm25.metrics, "timings": bm25.timings}
    if args.output:
        from bgekit.eval.report import write_json

        write_json(args.output, summary)
    print("\n" + ("ALL CHECKS PASSED" if not failures else "FAILED:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
