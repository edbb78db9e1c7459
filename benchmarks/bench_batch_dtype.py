"""Choosing a batch size and a dtype: all-MiniLM-L6-v2 encoding speed by batch size and dtype, CPU, one run.

Long texts (the first N SciFact documents, title + text, up to the model's 256 tokens) and short ones (SciFact queries) are
encoded at each batch size in fp32 and bf16; each line prints texts/s and the ratio to the peer, fp32 at batch
size 32, timed right before that row in each repeat (so load that changes during the run hits both), plus the
smallest cosine between bf16 and fp32 vectors. On a shared machine trust the ratios more than the texts/s.

    python benchmarks/bench_batch_dtype.py [--docs 256] [--queries 512] [--batch-sizes 1,8,32,128] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact")


def read(path: str, n: int, title: bool) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append(((d.get("title", "") + " ") if title else "") + d["text"])
            if len(out) == n:
                break
    return [t.strip() for t in out]


def best(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--queries", type=int, default=512)
    ap.add_argument("--batch-sizes", default="1,8,32,128")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    from bgekit import Embedder

    if args.threads:
        torch.set_num_threads(args.threads)
    sets = {"documents": read(os.path.join(SCIFACT, "corpus.jsonl"), args.docs, True),
            "queries": read(os.path.join(SCIFACT, "queries.jsonl"), args.queries, False)}
    models = {d: Embedder("all-MiniLM-L6-v2", dtype=d) for d in ("fp32", "bf16")}
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; each row's ratio is the median over "
          f"{args.repeats} repeats of (peer time / row time), the peer run right before the row")
    for name, texts in sets.items():
        models["fp32"].encode(texts[:8], show_progress=False)  # warm-up
        peer = lambda: models["fp32"].encode(texts, batch_size=32, show_progress=False)  # noqa: E731
        print(f"\n{name}: {len(texts)} texts; peer = fp32 at batch size 32")
        print(f"{'dtype':>5} {'batch':>5} {'texts/s':>8} {'vs peer':>8} {'min cos to fp32':>16}")
        for size in sizes:
            ref = None
            for dtype in ("fp32", "bf16"):
                ratios, times = [], []
                for _ in range(args.repeats):  # alternate peer and row: load that changes over time hits both
                    t_peer, _ = best(peer, 1)
                    t, out = best(lambda: models[dtype].encode(texts, batch_size=size, show_progress=False), 1)
                    ratios.append(t_peer / t)
                    times.append(t)
                ref = out if dtype == "fp32" else ref
                cos = float(np.min(np.sum(out * ref, axis=1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))))
                print(f"{dtype:>5} {size:>5} {len(texts) / min(times):>8.1f} {float(np.median(ratios)):>7.2f}x {cos:>16.5f}")

if __name__ == "__main__":
    main()
