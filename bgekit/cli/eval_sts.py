"""`bgekit eval sts`: cosine Spearman and Pearson of an embedder on sentence pairs with gold scores (as MTEB).

    bgekit eval sts --data ../shared/data/stsbenchmark-dev/dev.jsonl --model all-MiniLM-L6-v2 --output sts.json
"""
from __future__ import annotations

import argparse
import json
import sys

from bgekit.cli.checks import check_devices, check_input, check_output, positive_int


def cmd_sts(args: argparse.Namespace) -> int:
    from bgekit.eval.sts import evaluate_sts, read_sts
    from bgekit.loading import load_embedder

    check_input(args.data, "--data")
    check_output(args.output, "--output")  # JSON whatever the file is called, as the other eval commands
    check_devices(args.device)
    pairs = read_sts(args.data)
    kwargs = {k: v for k, v in (("dtype", args.dtype), ("devices", args.device), ("passage_max_length", args.max_length))
              if v}
    model = load_embedder(args.model, **kwargs)
    scores = evaluate_sts(model, pairs, batch_size=args.batch_size, show_progress=not args.no_progress)
    report = {"model": args.model, "data": args.data, **scores}
    print(f"model: {args.model}  pairs: {scores['num_pairs']}\n"
          f"cosine_spearman {scores['cosine_spearman']:.5f}  cosine_pearson {scores['cosine_pearson']:.5f}")
    if args.output:
        from bgekit.io import atomic_write_text

        atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def register(eval_sub: argparse._SubParsersAction) -> None:
    """Add ``sts`` to the ``bgekit eval`` subcommands."""
    p = eval_sub.add_parser("sts", help="STS: cosine Spearman / Pearson on sentence pairs (jsonl: sentence1, sentence2, score)")
    p.add_argument("--data", required=True, help="jsonl with sentence1, sentence2, score per line (e.g. STS-B dev.jsonl)")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="embedder name or folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=positive_int, help="encoding batch size (scores do not depend on it)")
    p.add_argument("--max-length", type=positive_int, help="tokens per sentence (default: the model's)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--device", action="append", help="device, repeatable")
    p.add_argument("--output", "-o", help="write the scores as JSON here (cosine_spearman, cosine_pearson)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sts)
