"""Where bf16 gains on this CPU, and where it does not: the pieces of one MiniLM encoder layer, fp32 vs bf16.

Times each operation of a BERT layer at all-MiniLM-L6-v2's shapes (hidden 384, 12 heads of 32, feed-forward
1536) on a full batch (default 32 x 256 tokens, a padding mask as length-sorted batches have), in fp32 and
bf16, and prints each one's speed-up and its share of the layer. The last lines give the layer-level bf16
speed-up, which bounds what bf16 can gain on the whole model with these kernels (Amdahl), and the bound if
attention sped up as much as the matrix products do.

    python benchmarks/bench_bf16_kernels.py [--batch 32] [--length 256] [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import time


def best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def layer_ops(batch: int, length: int, dtype, hidden: int = 384, heads: int = 12, ffn: int = 1536) -> dict:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch * length, hidden, generator=gen).to(dtype)
    inter = torch.randn(batch * length, ffn, generator=gen).to(dtype)
    lin = {name: torch.nn.Linear(i, o).to(dtype) for name, (i, o) in
           {"q/k/v/out projection (x4)": (hidden, hidden), "feed-forward in": (hidden, ffn),
            "feed-forward out": (ffn, hidden)}.items()}
    head_dim = hidden // heads
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=gen).to(dtype) for _ in range(3))
    mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    mask[-1, ..., length // 2:] = False  # one padded row, as in a length-sorted batch
    norm = torch.nn.LayerNorm(hidden).to(dtype)
    return {
        "q/k/v/out projection (x4)": (lambda: lin["q/k/v/out projection (x4)"](x), 4),
        "feed-forward in": (lambda: lin["feed-forward in"](x), 1),
        "feed-forward out": (lambda: lin["feed-forward out"](inter), 1),
        "attention (SDPA, head dim 32)": (lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), 1),
        "gelu": (lambda: F.gelu(inter), 1),
        "layer norm + residual (x2)": (lambda: norm(x + x), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    times = {}
    with torch.inference_mode():
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            times[name] = {op: best_ms(fn, args.repeats) * count
                           for op, (fn, count) in layer_ops(args.batch, args.length, dtype).items()}
    total = {name: sum(t.values()) for name, t in times.items()}
    print(f"one MiniLM layer, batch {args.batch} x {args.length} tokens, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'operation':<32} {'fp32 ms':>8} {'bf16 ms':>8} {'speed-up':>8} {'fp32 share':>10} {'bf16 share':>10}")
    for op in times["fp32"]:
        f, b = times["fp32"][op], times["bf16"][op]
        print(f"{op:<32} {f:8.2f} {b:8.2f} {f / b:7.2f}x {f / total['fp32']:10.1%} {b / total['bf16']:10.1%}")
    print(f"{'layer':<32} {total['fp32']:8.2f} {total['bf16']:8.2f} {total['fp32'] / total['bf16']:7.2f}x")
    matmul_ops = [op for op in times["fp32"] if "projection" in op or "feed-forward" in op]
    matmul_speedup = sum(times["fp32"][op] for op in matmul_ops) / sum(times["bf16"][op] for op in matmul_ops)
    attn = "attention (SDPA, head dim 32)"
    if_attention_kept_up = total["bf16"] - times["bf16"][attn] + times["fp32"][attn] / matmul_speedup
    print(f"matrix products alone: {matmul_speedup:.2f}x; the layer if attention sped up as much: "
          f"{total['fp32'] / if_attention_kept_up:.2f}x")


if __name__ == "__main__":
    main()
