"""`bgekit rerank`: score passages against queries with a reranker and write them sorted.

Input is either a .jsonl file of ``{"query": ..., "passages": [...]}`` objects (a passage is a string or an
object with "text" and optionally "id"; an optional "id" on the query object is copied to the output), or
``--query`` with a .txt / .jsonl file of passages. Output (``-o``) is jsonl, one line per query with its hits
best first, written atomically; without ``-o`` a table is printed (or JSON with ``--json``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from bgekit.cli.checks import check_devices, check_input, check_output, positive_int, refuse
from bgekit.errors import InputError, UsageError
from bgekit.io import iter_jsonl

DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"


def _passage(value: Any, where: str, index: int) -> tuple[str | None, str]:
    if isinstance(value, str):
        return None, value
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        pid = value.get("id")
        return (None if pid is None else str(pid)), value["text"]
    raise InputError(f"{where}: passages[{index}] must be a string or an object with a string 'text'")


def read_queries(path: str) -> list[dict]:
    """Read ``{"query", "passages"}`` objects from a jsonl file.

    Returns:
        Dicts with "query", "texts", "ids" (None when no passage has an id) and "id" (the query's, or None).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not JSON or lacks a string "query" / a list "passages" (file and line named).
    """
    items = []
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        if not isinstance(obj.get("query"), str) or not isinstance(obj.get("passages"), list):
            raise InputError(f"{where}: expected an object with a string 'query' and a list 'passages'")
        parsed = [_passage(p, where, i) for i, p in enumerate(obj["passages"])]
        ids = [pid if pid is not None else str(i) for i, (pid, _) in enumerate(parsed)]
        has_ids = any(pid is not None for pid, _ in parsed)
        items.append({"query": obj["query"], "texts": [t for _, t in parsed], "ids": ids if has_ids else None,
                      "id": obj.get("id")})
    return items


def load_scorer(args: argparse.Namespace) -> Callable[[list], list[float]]:
    """A function scoring a list of pairs, for any reranker kind."""
    from bgekit.backends import locate
    from bgekit.registry import resolve_reranker
    from bgekit.reranker import AUTO_CLASSES, Reranker

    spec = resolve_reranker(args.model, folder=locate(args.model))
    if spec.kind in AUTO_CLASSES:
        kwargs: dict[str, Any] = {"batch_size": args.batch_size, "dtype": args.dtype, "devices": args.device,
                                  "use_fp16": True}
        if args.max_length:
            kwargs["max_length"] = args.max_length
        model = Reranker(args.model, spec=spec, **kwargs)
        return lambda pairs: model.score(pairs, normalize=args.normalize, show_progress=True)
    from bgekit.compat.reranker import FlagAutoReranker

    kwargs = {"batch_size": args.batch_size, "devices": args.device, "use_bf16": args.dtype == "bf16",
              "use_fp16": args.dtype in (None, "fp16")}
    if args.max_length:
        kwargs["max_length"] = args.max_length
    model = FlagAutoReranker.from_finetuned(args.model, **kwargs)
    return lambda pairs: model.compute_score(pairs, normalize=args.normalize)


def cmd_rerank(args: argparse.Namespace) -> int:
    from bgekit.io import atomic_open
    from bgekit.reranker import rank_scores

    check_input(args.input, "input")
    check_output(args.output, "--output")
    if args.output:
        refuse(args, {"--json": False}, "with --output (the output file is jsonl)")
    check_devices(args.device)
    if args.query is not None:
        from bgekit.cli.embed import read_texts

        items = [{"query": args.query, "texts": read_texts(args.input, args.field), "ids": None, "id": None}]
    else:
        if not args.input.endswith(".jsonl"):
            raise UsageError(f"{args.input!r}: without --query the input must be a .jsonl of {{query, passages}} objects")
        refuse(args, {"--field": None}, "without --query (passages are read from each line's 'passages')")
        items = read_queries(args.input)
    pairs = [(it["query"], t) for it in items for t in it["texts"]]
    scores = load_scorer(args)(pairs) if pairs else []
    results, start = [], 0
    for it in items:
        part = scores[start:start + len(it["texts"])]
        start += len(it["texts"])
        hits = rank_scores(part, it["texts"], it["ids"], args.top_k)
        res = {"query": it["query"], "hits": [{"rank": h.rank, "id": h.id, "score": h.score, "text": h.text} for h in hits]}
        results.append(res if it["id"] is None else {"id": it["id"], **res})
    if args.output:
        with atomic_open(args.output) as f:
            for res in results:
                f.write(json.dumps(res, ensure_ascii=False) + "\n")
        print(f"reranked {len(pairs)} passages for {len(items)} queries with {args.model} -> {args.output}", file=sys.stderr)
    elif args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        _print_table(results)
    return 0


def _print_table(results: list[dict]) -> None:
    for res in results:
        print(f"\nquery: {res['query']}")
        print(f"{'rank':>4}  {'score':>8}  {'id':>6}  text")
        for h in res["hits"]:
            text = h["text"] if len(h["text"]) <= 80 else h["text"][:77] + "..."
            print(f"{h['rank']:>4}  {h['score']:8.4f}  {h['id']:>6}  {text}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerank", help="score passages against queries with a reranker and write them sorted")
    p.add_argument("input", help=".jsonl of {query, passages} objects; with --query, a .txt/.jsonl file of passages")
    p.add_argument("-q", "--query", default=None, help="one query for all passages of INPUT")
    p.add_argument("-o", "--output", default=None, help="write results as jsonl here (default: print a table)")
    p.add_argument("--field", default=None, help="with --query and a .jsonl input: the passage field (default: text)")
    # Required: no reranker ships with bgekit, so a default would be a hub download that fails offline.
    p.add_argument("--model", required=True, help=f"reranker name or folder, e.g. {DEFAULT_RERANKER} (a hub download) "
                   "or a local folder; required, as no reranker ships with bgekit")
    p.add_argument("--top-k", type=positive_int, default=None, help="keep this many passages per query (default: all)")
    p.add_argument("--normalize", action="store_true", help="sigmoid scores to 0..1")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (without -o)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="pairs per forward pass (default: 32)")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help="tokens per pair, at most the model's position limit (default: 512)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                   help="default: fp16 on GPU, fp32 on CPU; bf16 is fast on CPUs with bf16 units")
    p.add_argument("--device", action="append", help="device, repeatable for several (default: all GPUs or CPU)")
    p.set_defaults(func=cmd_rerank)
