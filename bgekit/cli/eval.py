"""`bgekit eval ...`: evaluate on BEIR-style folders or named benchmarks; compare results files.

    bgekit eval beir --dataset-dir ../shared/data/scifact --model all-MiniLM-L6-v2 --output results.json
    bgekit eval beir --dataset-dir DIR --model BAAI/bge-m3 --retrieval dense+sparse \\
        --reranker BAAI/bge-reranker-v2-m3 --rerank-top-k 100
    bgekit eval benchmark miracl en --data-root data --model BAAI/bge-m3
    bgekit eval report a.json b.json --markdown table.md --plot curves.png
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bgekit.cli.checks import check_devices, check_extras, check_input, check_output, positive_int, refuse
from bgekit.errors import UsageError

_SHOWN = ("ndcg@10", "recall@100", "mrr@10", "map@10", "precision@10")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, float(value) if "." in value else int(value)


def _config(args: argparse.Namespace):
    from bgekit.eval.runner import EvalConfig

    return EvalConfig(
        retrieval=args.retrieval, k_values=tuple(args.k_values), search_top_k=args.search_top_k,
        drop_self=not args.keep_self, batch_size=args.batch_size, index_factory=args.index_factory,
        search_params=dict(args.search_param or []) or None, fusion=args.fusion, weights=tuple(args.weights),
        rerank_top_k=args.rerank_top_k, rerank_batch_size=args.rerank_batch_size,
        rerank_interpolation=args.rerank_interpolation, bm25_k1=args.bm25_k1,
        bm25_b=args.bm25_b, bm25_stemmer=None if args.no_stem else "english", cache_dir=args.cache_dir,
        show_progress=not args.no_progress)


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.dtype:
        kwargs["dtype"] = args.dtype
    if args.device:
        kwargs["devices"] = args.device
    for key in ("query_max_length", "passage_max_length"):
        value = getattr(args, key) or args.max_length
        if value:
            kwargs[key] = value
    if args.query_instruction is not None:
        kwargs["query_instruction"] = args.query_instruction or None
    if args.passage_instruction is not None:
        kwargs["passage_instruction"] = args.passage_instruction or None
    if args.task:
        kwargs["task"] = args.task
    return kwargs


def _reranker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.dtype == "bf16":
        kwargs["use_bf16"] = True
    elif args.dtype == "fp16":
        kwargs["use_fp16"] = True
    if args.device:
        kwargs["devices"] = args.device
    if args.reranker_max_length:
        kwargs["max_length"] = args.reranker_max_length
    return kwargs


def print_report(report: dict, out=None) -> None:
    """A readable table of the main metrics and stage timings for every dataset and split."""
    out = out or sys.stdout
    model = (report.get("model") or {}).get("name") or "BM25"
    reranker = (report.get("reranker") or {}).get("name")
    print(f"model: {model}" + (f"  reranker: {reranker}" if reranker else "") + f"  retrieval: {report['config']['retrieval']}", file=out)
    print(f"{'dataset':<20} {'split':<6} {'queries':>7} {'docs':>8}  " + "  ".join(f"{m:>12}" for m in _SHOWN), file=out)
    for name, entry in report["datasets"].items():
        for split, r in entry["splits"].items():
            cells = "  ".join(f"{r['metrics'][m]:12.4f}" if m in r["metrics"] else f"{'-':>12}" for m in _SHOWN)
            print(f"{name:<20} {split:<6} {r['num_queries']:>7} {r['num_docs']:>8}  {cells}", file=out)
            t = r["timings"]
            print(f"{'':<20} time: encode {t['encode']:.1f}s, index {t['index']:.2f}s, search {t['search']:.2f}s, "
                  f"rerank {t['rerank']:.1f}s, metrics {t['metrics']:.2f}s, total {t['total']:.1f}s"
                  + ("  (corpus embeddings from cache)" if r.get("cache_hit") else ""), file=out)


def _finish(report: dict, args: argparse.Namespace) -> int:
    from bgekit.eval.report import markdown_table, plot_curves, run_label, write_json

    print_report(report)
    if args.output:
        write_json(args.output, report)
        print(f"wrote {args.output}", file=sys.stderr)
    runs = [(run_label(report), report)]
    if args.markdown:
        from bgekit.io import atomic_write_text

        atomic_write_text(args.markdown, markdown_table(runs) + "\n")
    if args.plot:
        plot_curves(runs, args.plot)
    return 0


def _precheck(args: argparse.Namespace) -> None:
    """Everything that can be checked before a model loads: packages, devices, output paths, settings."""
    from bgekit.eval.retrieval import outputs_for

    needs = ["pytrec_eval"] + (["bm25s", "Stemmer"] if args.retrieval == "bm25" else ["faiss"])
    check_extras(*needs, *(["matplotlib"] if args.plot else []))
    check_devices(args.device)
    check_output(args.output, "--output")
    check_output(args.markdown, "--markdown")
    check_output(args.plot, "--plot", (".png",))
    outputs_for(args.retrieval)
    _config(args)  # EvalConfig validates every setting (k values, BM25 k1/b, fusion weights, cache folder)
    _refuse_inapplicable(args)


def _refuse_inapplicable(args: argparse.Namespace) -> None:
    """Options that the chosen retrieval (or the absence of --reranker) would silently ignore are errors."""
    if args.retrieval == "bm25":
        refuse(args, {"--query-instruction": None, "--passage-instruction": None, "--task": None, "--max-length": None,
                      "--query-max-length": None, "--passage-max-length": None, "--cache-dir": None,
                      "--batch-size": None, "--index-factory": "Flat", "--search-param": None},
               "with --retrieval bm25 (no embedder is used)")
        if not args.reranker:
            refuse(args, {"--dtype": None, "--device": None}, "with --retrieval bm25 and no --reranker (no model is used)")
    else:
        refuse(args, {"--bm25-k1": 0.9, "--bm25-b": 0.4, "--no-stem": False}, f"with --retrieval {args.retrieval}")
    if args.retrieval != "dense+sparse":
        refuse(args, {"--fusion": "weighted_sum", "--weights": [1.0, 0.3]},
               f"with --retrieval {args.retrieval} (fusion combines the signals of dense+sparse)")
    if args.retrieval == "sparse":
        refuse(args, {"--index-factory": "Flat", "--search-param": None}, "with --retrieval sparse (no FAISS index)")
    if not args.reranker:
        refuse(args, {"--rerank-top-k": 100, "--rerank-batch-size": None, "--reranker-max-length": None,
                      "--rerank-interpolation": 0.0}, "without --reranker")


def cmd_beir(args: argparse.Namespace) -> int:
    from bgekit.eval.runner import evaluate_beir

    _precheck(args)
    for folder in args.dataset_dir:
        if not os.path.isdir(folder):
            from bgekit.errors import InputFileError

            raise InputFileError(f"--dataset-dir {folder!r} " + ("is a file; expected a dataset folder"
                                                                 if os.path.exists(folder) else "does not exist"))

    report = evaluate_beir(args.dataset_dir, model=args.model, splits=args.split or ["test"], reranker=args.reranker,
                           config=_config(args), layout=args.layout, model_kwargs=_model_kwargs(args),
                           reranker_kwargs=_reranker_kwargs(args))
    return _finish(report, args)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from bgekit.eval.hub import load_benchmark
    from bgekit.eval.runner import evaluate_retrieval, make_report

    _precheck(args)
    config = _config(args)
    data = [load_benchmark(args.family, n, args.split, args.data_root) for n in args.names]
    model = None
    if config.retrieval != "bm25":
        from bgekit.loading import load_embedder

        model = load_embedder(args.model, **_model_kwargs(args))
    reranker = None
    if args.reranker:
        from bgekit.compat.reranker import FlagAutoReranker

        reranker = FlagAutoReranker.from_finetuned(args.reranker, **_reranker_kwargs(args))
    results = [evaluate_retrieval(d, model, reranker, config) for d in data]
    return _finish(make_report(results, model, reranker, config), args)


def cmd_report(args: argparse.Namespace) -> int:
    from bgekit.eval.report import markdown_table, plot_curves, read_json, run_label

    check_output(args.markdown, "--markdown")
    check_output(args.plot, "--plot", (".png",))
    if args.plot:
        check_extras("matplotlib")
    runs = [(run_label(r), r) for r in (read_json(check_input(p, "results file")) for p in args.results)]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    known = {m for _, r in runs for entry in r.get("datasets", {}).values()
             for split in entry.get("splits", {}).values() for m in split.get("metrics", {})}
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        raise UsageError(f"--metrics: {', '.join(unknown) or 'none given'} not in these results; "
                         f"available: {', '.join(sorted(known, key=_metric_order))}")
    table = markdown_table(runs, metrics)
    print(table)
    if args.markdown:
        from bgekit.io import atomic_write_text

        atomic_write_text(args.markdown, table + "\n")
    if args.plot:
        plot_curves(runs, args.plot)
    return 0


def _metric_order(name: str) -> tuple[str, int]:
    base, _, k = name.partition("@")
    return base, int(k) if k.isdigit() else 0


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="embedder name or folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--retrieval", default="dense", choices=["dense", "sparse", "dense+sparse", "bm25"])
    p.add_argument("--reranker", help="rerank the first stage with this reranker (name or folder)")
    p.add_argument("--rerank-top-k", type=positive_int, default=100)
    p.add_argument("--rerank-interpolation", type=float, default=0.0, metavar="W",
                   help="weight of the first-stage score mixed into the reranked score, 0..1 (default 0: the "
                        "reranker alone); both are z-normalised per query")
    p.add_argument("--rerank-batch-size", type=positive_int)
    p.add_argument("--reranker-max-length", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="encoding batch size (scores do not depend on it)")
    p.add_argument("--max-length", type=positive_int, help="tokens per query and passage (default: the model's)")
    p.add_argument("--query-max-length", type=positive_int)
    p.add_argument("--passage-max-length", type=positive_int)
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--device", action="append", help="device, repeatable")
    p.add_argument("--query-instruction", help="override the model's query instruction ('' for none)")
    p.add_argument("--passage-instruction", help="override the model's passage instruction ('' for none)")
    p.add_argument("--task", help="the task's query/passage instructions (BAAI/llm-embedder: qa, convsearch, chat, "
                                  "lrlm, icl, tool)")
    p.add_argument("--k-values", type=_ints, default=[1, 3, 5, 10, 100, 1000], help="metric cutoffs, e.g. 1,10,100")
    p.add_argument("--search-top-k", type=positive_int, default=1000, help="documents retrieved per query")
    p.add_argument("--keep-self", action="store_true",
                   help="keep a retrieved document whose id equals the query id (BEIR/MTEB drop it; so do we by default)")
    p.add_argument("--index-factory", default="Flat", help="FAISS index: Flat (exact, default), HNSW32, IVF1024,Flat ...")
    p.add_argument("--search-param", type=_param, action="append", help="FAISS search parameter NAME=VALUE, e.g. efSearch=256")
    p.add_argument("--fusion", choices=["weighted_sum", "rrf"], default="weighted_sum", help="dense+sparse fusion")
    p.add_argument("--weights", type=_floats, default=[1.0, 0.3], help="dense,sparse weights for weighted_sum")
    p.add_argument("--bm25-k1", type=float, default=0.9)
    p.add_argument("--bm25-b", type=float, default=0.4)
    p.add_argument("--no-stem", action="store_true", help="BM25 without stemming")
    p.add_argument("--cache-dir", help="cache corpus embeddings here")
    p.add_argument("--output", "-o", help="write the results JSON here")
    p.add_argument("--markdown", help="write a markdown table here")
    p.add_argument("--plot", help="write a PNG of recall@k and nDCG@k here")
    p.add_argument("--no-progress", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate retrieval on benchmarks; compare results")
    eval_sub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = eval_sub.add_parser("beir", help="evaluate on local BEIR-layout (or custom jsonl) dataset folders")
    b.add_argument("--dataset-dir", action="append", required=True, help="dataset folder, repeatable")
    b.add_argument("--split", action="append", help="qrels split, repeatable (default: test)")
    b.add_argument("--layout", choices=["auto", "beir", "custom"], default="auto")
    _add_eval_args(b)
    b.set_defaults(func=cmd_beir)

    n = eval_sub.add_parser("benchmark", help="evaluate on a named benchmark (local copy or hub download)")
    n.add_argument("family", help="beir, msmarco, miracl, mldr, mkqa, air-bench, bright, mteb, c-mteb")
    n.add_argument("names", nargs="+", help="dataset names within the family (e.g. scifact; en)")
    n.add_argument("--split", help="split (default: the family's usual one)")
    n.add_argument("--data-root", help="folder holding NAME/ copies; downloads are saved there")
    _add_eval_args(n)
    n.set_defaults(func=cmd_benchmark)

    r = eval_sub.add_parser("report", help="markdown table and PNG plot across results files")
    r.add_argument("results", nargs="+", help="results JSON files from bgekit eval")
    r.add_argument("--metrics", default=",".join(_SHOWN))
    r.add_argument("--markdown")
    r.add_argument("--plot")
    r.set_defaults(func=cmd_report)

    from bgekit.cli import eval_sts  # `bgekit eval sts` lives in its own module

    eval_sts.register(eval_sub)
