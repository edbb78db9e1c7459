"""`bgekit encode` and `bgekit search`: embed a file of texts; retrieve from a small corpus."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from bgekit.cli.checks import check_devices, check_input, check_output, positive_int, refuse
from bgekit.errors import InputError, UsageError
from bgekit.io import iter_jsonl, iter_lines

# options of `search --index-dir` (-> their defaults); given without --index-dir they are an error
INDEX_ONLY = {"--mode": "dense", "--fusion": "weighted_sum", "--colbert": False, "--candidates": None,
              "--reranker": None, "--rerank-depth": None, "--filter": None, "--ef-search": None, "--image": None,
              "--visual-weights": None}

DEFAULT_SAMPLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "sample_corpus.jsonl")


def is_jsonl(path: str) -> bool:
    return path.endswith((".jsonl", ".jsonl.gz"))


def read_texts(path: str, field: str | None = "text") -> list[str]:
    """Texts from a .txt file (one per line) or a .jsonl file (``field`` of each object; default "text").

    Raises:
        FileNotFoundError: the file does not exist or is a folder.
        ValueError: a jsonl line that is not JSON, not an object, or lacks ``field``, or bytes that are not
            UTF-8 (file and line named); a ``field`` other than "text" for a .txt file (it would be ignored).
    """
    if not is_jsonl(path):
        if field not in (None, "text"):
            raise UsageError(f"--field {field!r} applies to .jsonl input only; {path!r} is read as one text per line")
        return [line for _, line in iter_lines(path)]
    field = field or "text"
    texts: list[str] = []
    for n, obj in iter_jsonl(path):
        if not isinstance(obj.get(field), str):
            raise InputError(f"{path}:{n}: expected an object with a string field {field!r}")
        texts.append(obj[field])
    return texts


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"batch_size": args.batch_size}
    if args.max_length:
        kwargs["query_max_length"] = kwargs["passage_max_length"] = args.max_length
    if args.dtype:
        kwargs["dtype"] = args.dtype
    if args.device:
        kwargs["devices"] = args.device
    if args.task:
        kwargs["task"] = args.task
    return kwargs


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="texts per forward pass (default: 64)")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help="tokens per text, at most the model's position limit (default: the model's)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    p.add_argument("--device", action="append", help="device, repeatable for several (default: all GPUs or CPU)")
    p.add_argument("--task", help="the task's query/passage instructions, for models with per-task instructions "
                                  "(BAAI/llm-embedder: qa, convsearch, chat, lrlm, icl, tool)")


def cmd_encode(args: argparse.Namespace) -> int:
    from bgekit.distributed import cli as ray_cli
    from bgekit.loading import load_embedder
    from bgekit.io import atomic_open, atomic_save_npy
    from bgekit.visual import cli as visual_cli

    if ray_cli.check(args):  # --ray: a pool of Ray actors writes a shard folder (bgekit.distributed)
        return ray_cli.encode(args, _model_kwargs(args))
    if visual_cli.wanted(args):  # --visual-weights: images and image + text with Visualized-BGE (bgekit.visual.cli)
        return visual_cli.encode(args)
    check_input(args.input, "input")
    check_output(args.output, "--output", (".jsonl",) if args.sparse else (".npy",))
    check_devices(args.device)
    texts = read_texts(args.input, args.field)
    model = load_embedder(args.model, **_model_kwargs(args))
    if args.sparse:
        if not hasattr(model, "encode_multi"):
            from bgekit.errors import ModelMismatch

            raise ModelMismatch(f"--sparse needs a BGE-M3 model; {args.model!r} is a {model.spec.kind} embedder")
        role = {"query": "query", "passage": "passage", "plain": "text"}[args.kind]
        out = model.encode_multi(texts, role=role, outputs=("sparse",), show_progress=True)
        with atomic_open(args.output) as f:
            for i, vec in enumerate(out.sparse):
                f.write(json.dumps({"index": i, "weights": vec.to_dict()}) + "\n")
    else:
        encode = {"query": model.encode_queries, "passage": model.encode_corpus, "plain": model.encode}[args.kind]
        atomic_save_npy(args.output, encode(texts, show_progress=True))
    print(f"encoded {len(texts)} texts with {args.model} -> {args.output}", file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    import numpy as np

    from bgekit.loading import load_embedder

    refuse(args, INDEX_ONLY, "without --index-dir (they are options of an index search; --corpus ranks a small "
                             "file by dense similarity only)")
    check_input(args.corpus, "--corpus")
    check_devices(args.device)
    docs = read_texts(args.corpus, args.field)
    if not docs:
        raise InputError(f"corpus {args.corpus!r} is empty")
    model = load_embedder(args.model, **_model_kwargs(args))
    doc_emb = model.encode_corpus(docs)
    query_emb = model.encode_queries(args.query)  # (Q, D)
    scores = np.asarray(query_emb) @ np.asarray(doc_emb).T  # (Q, N)
    k = min(args.top_k, len(docs))
    results = []
    for qi, query in enumerate(args.query):
        top = np.argsort(-scores[qi], kind="stable")[:k]
        results.append({"query": query, "hits": [{"rank": r + 1, "index": int(i), "score": float(scores[qi, i]), "text": docs[i]} for r, i in enumerate(top)]})
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    for res in results:
        print(f"\nquery: {res['query']}")
        print(f"{'rank':>4}  {'score':>6}  text")
        for h in res["hits"]:
            text = h["text"] if len(h["text"]) <= 90 else h["text"][:87] + "..."
            print(f"{h['rank']:>4}  {h['score']:6.3f}  {text}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="embed texts from a .txt or .jsonl file into a .npy (or sparse .jsonl)")
    p.add_argument("input", help=".txt (one text per line) or .jsonl file (with --ray: .jsonl or .parquet)")
    p.add_argument("-o", "--output", required=True, help="output .npy (or .jsonl with --sparse; a folder with --ray)")
    p.add_argument("--field", default=None, help="jsonl input: the field holding the text (default: text)")
    p.add_argument("--kind", choices=["plain", "query", "passage"], default="plain",
                   help="apply the query or passage instruction (default: plain)")
    p.add_argument("--sparse", action="store_true", help="BGE-M3: write lexical weights as jsonl (--ray: dense + sparse shards)")
    _add_model_args(p)
    importlib.import_module("bgekit.distributed.cli").add_args(p)  # --ray and its options
    importlib.import_module("bgekit.visual.cli").add_args(p)  # --visual-weights: images (Visualized-BGE)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("search", help="rank the texts of a small corpus for one or more queries")
    p.add_argument("query", nargs="*", help="query text(s)")
    p.add_argument("--corpus", default=None, help="a .txt or .jsonl corpus (default: a bundled sample)")
    p.add_argument("--field", default=None, help="jsonl corpus: the field holding the text (default: text)")
    p.add_argument("--top-k", type=positive_int, default=3, help="hits per query (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model_args(p)
    p.set_defaults(func=cmd_search)
    importlib.import_module("bgekit.cli.index").extend_search(p, cmd_search, DEFAULT_SAMPLE)  # --index-dir and its options
