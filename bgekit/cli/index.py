"""`bgekit index build|add|delete|info|compact|export-qdrant|export-milvus` and `bgekit search --index-dir`."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from typing import Any

from bgekit.cli import milvus
from bgekit.cli.checks import check_devices, check_extras, check_input, check_output_dir, positive_int, refuse
from bgekit.errors import UsageError
from bgekit.visual import cli as visual_cli

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if getattr(args, "batch_size", None):
        kwargs["batch_size"] = args.batch_size
    if getattr(args, "max_length", None):
        kwargs["query_max_length"] = kwargs["passage_max_length"] = args.max_length
    if getattr(args, "dtype", None):
        kwargs["dtype"] = args.dtype
    if getattr(args, "device", None):
        kwargs["devices"] = args.device
    return kwargs


def _load_model(name: str, args: argparse.Namespace):
    from bgekit.loading import load_embedder

    return load_embedder(name, **_model_kwargs(args))


def _index_model(args: argparse.Namespace, store) -> Any:
    """--model, or the model the index records (a Visualized-BGE index: its text model and weights file)."""
    if store.model_info.visual is not None:
        return visual_cli.index_model(args, store.model_info)
    if getattr(args, "visual_weights", None):
        raise UsageError(f"--visual-weights applies to an index built with a Visualized-BGE model; {store.path!r} "
                         f"was built with the text model {store.model_info.name!r}")
    return _load_model(args.model or store.model_info.name, args)


def _load_reranker(name: str | None, args: argparse.Namespace):
    if not name:
        return None
    from bgekit.compat.reranker import FlagAutoReranker

    kwargs = {"devices": args.device} if getattr(args, "device", None) else {}
    return FlagAutoReranker.from_finetuned(name, **kwargs)


def _check_ef_search(ef_search: int | None, factory: str) -> None:
    if ef_search is not None and "hnsw" not in factory.lower():
        raise UsageError(f"--ef-search applies to HNSW indexes only; this one is {factory!r}")


def _search_params(args: argparse.Namespace) -> dict | None:
    return {"efSearch": args.ef_search} if getattr(args, "ef_search", None) else None


def cmd_build(args: argparse.Namespace) -> int:
    from bgekit.distributed import cli as ray_cli
    from bgekit.index.documents import stream_corpus
    from bgekit.index.generation import read_pointer
    from bgekit.index.store import build_index

    if args.colbert and args.dense_only:
        raise UsageError("--colbert and --dense-only contradict each other: --dense-only stores dense vectors only")
    check_extras("faiss", "scipy")  # before the model loads: a missing package is named at once
    check_input(args.corpus, "--corpus")
    check_output_dir(args.index_dir, "--index-dir")
    check_devices(args.device)
    _check_ef_search(args.ef_search, args.factory)
    use_ray = ray_cli.check_index(args)  # --ray: encode on Ray actors (bgekit.distributed), then build from the shards
    if os.path.isdir(args.index_dir) and read_pointer(args.index_dir) is not None and not args.overwrite:
        raise UsageError(f"an index already exists in {args.index_dir!r}; add to it (bgekit index add), "
                         "or rebuild it with --overwrite")
    visual = visual_cli.check_index_build(args)
    docs = stream_corpus(args.corpus, images=visual)  # checked whole (ids only kept), then read a chunk at a time
    model = visual_cli.index_model(args) if visual else _load_model(args.model or DEFAULT_MODEL, args)
    if not hasattr(model, "encode_multi") and not visual:
        from bgekit.errors import ModelMismatch

        for flag in ("--colbert", "--dense-only"):
            if getattr(args, flag[2:].replace("-", "_")):
                raise ModelMismatch(f"{flag} applies to BGE-M3 models; {model.model_name_or_path!r} is a "
                                    f"{model.spec.kind} embedder, which stores dense vectors only")
    outputs = ("dense",) if args.dense_only else None
    with (ray_cli.index_vectors(args, docs, model, args.model or DEFAULT_MODEL, _model_kwargs(args)) if use_ray
          else contextlib.nullcontext()) as vectors:
        store = build_index(args.index_dir, model, docs, outputs=outputs, colbert=args.colbert, factory=args.factory,
                            metric=args.metric, search_params=_search_params(args), overwrite=args.overwrite,
                            batch_size=args.batch_size, vectors=vectors)
    print(f"built {store.path}: {store.count} documents, {', '.join(store.outputs)}, "
          f"{store.manifest['dense']['factory']} ({store.generation})", file=sys.stderr)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from bgekit.index.documents import stream_corpus
    from bgekit.index.store import open_index

    check_extras("faiss", "scipy")
    store = open_index(args.index_dir)
    check_input(args.corpus, "--corpus")
    check_devices(args.device)
    # checked whole (ids only kept) before the model loads, then read, encoded and written a chunk at a time
    docs = stream_corpus(args.corpus, images=store.model_info.visual is not None)
    store.check_new(docs.ids, args.upsert)  # ids already there: refused before the model loads (again under the lock)
    store.add(docs, _index_model(args, store), upsert=args.upsert, batch_size=args.batch_size)
    print(f"added {len(docs)} documents to {store.path}: {store.count} in all ({store.generation})", file=sys.stderr)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from bgekit.index.store import open_index

    from bgekit.io import iter_lines

    ids = list(args.ids or [])
    if args.ids_file:
        ids += [line.strip() for _, line in iter_lines(check_input(args.ids_file, "--ids-file")) if line.strip()]
    if not ids:
        raise ValueError("give document ids to delete: --ids ID ... or --ids-file FILE")
    store = open_index(args.index_dir)
    before = store.count
    store.delete(ids, missing="ignore" if args.ignore_missing else "error")
    print(f"deleted {before - store.count} documents from {store.path}: {store.count} left ({store.generation})",
          file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from bgekit.index.store import open_index

    check_extras("faiss", "scipy")
    store = open_index(args.index_dir)
    store.check()  # the full check: a damaged document table is reported, not described as healthy
    m = dict(store.manifest)
    m["model"] = {k: v for k, v in m["model"].items() if k != "probe"}
    if m["model"].get("visual"):  # a Visualized-BGE index: its image probe is as unreadable as the text probe
        m["model"]["visual"] = {k: v for k, v in m["model"]["visual"].items() if k != "image_probe"}
    if args.json:
        print(json.dumps(m, indent=2, ensure_ascii=False))
        return 0
    rows = [("path", store.path), ("generation", store.generation), ("documents", store.count),
            ("outputs", ", ".join(store.outputs)), ("model", store.model_info.name), ("kind", store.model_info.kind),
            ("dim", store.model_info.dim), ("dense index", f"{m['dense']['factory']} ({m['dense']['metric']})"),
            ("created", m["created"]), ("segments", f"{len(store.segments)} ({store.deleted} deleted rows)"),
            ("size", f"{store.disk_bytes() / 1e6:.1f} MB")]
    for k, v in rows:
        print(f"{k:>12}  {v}")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from bgekit.index.store import open_index

    check_extras("faiss", "scipy")
    store = open_index(args.index_dir)
    segments, deleted = len(store.segments), store.deleted
    if store.compacted:
        print(f"{store.path} is already compact: 1 segment, no deleted rows ({store.generation}); nothing written",
              file=sys.stderr)
        return 0
    store.compact()
    print(f"compacted {store.path}: {segments} segment(s) with {deleted} deleted rows -> 1 segment of {store.count} "
          f"documents ({store.generation})", file=sys.stderr)
    return 0


def cmd_export_qdrant(args: argparse.Namespace) -> int:
    from bgekit.index.qdrant import export_to_qdrant, qdrant_client
    from bgekit.index.store import open_index

    check_extras("qdrant_client", "faiss", "scipy")
    client = qdrant_client(url=args.qdrant_url, path=args.qdrant_path, api_key=os.environ.get("QDRANT_API_KEY"))
    n = export_to_qdrant(open_index(args.index_dir), client, args.collection, overwrite=args.overwrite)
    print(f"exported {n} documents to Qdrant collection {args.collection!r}", file=sys.stderr)
    return 0


def _parse_filter(items: list[str] | None) -> dict | None:
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--filter {item!r}: expected FIELD=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(key, []).append(parsed)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def search_index(args: argparse.Namespace) -> int:
    """`bgekit search --index-dir`: search a persisted index, print a table (or JSON)."""
    from bgekit.index.search import Searcher
    from bgekit.index.store import open_index

    refuse(args, {"--corpus": None, "--field": None}, "with --index-dir (the index holds the documents)")
    if args.mode != "hybrid":
        refuse(args, {"--fusion": "weighted_sum"}, f"with --mode {args.mode} (fusion combines the signals of --mode hybrid)")
    if not args.reranker:
        refuse(args, {"--rerank-depth": None}, "without --reranker")
    check_extras("faiss", "scipy")
    check_devices(args.device)
    store = open_index(args.index_dir, search_params=_search_params(args))
    _check_ef_search(args.ef_search, store.manifest["dense"]["factory"])
    images = visual_cli.check_image_queries(args, store)
    searcher = Searcher(store, _index_model(args, store), _load_reranker(args.reranker, args))
    results = searcher.search(list(args.query) or None, images=images or None, top_k=args.top_k, mode=args.mode,
                              fusion=args.fusion,
                              colbert=args.colbert, candidates=args.candidates, rerank_depth=args.rerank_depth,
                              filter=_parse_filter(args.filter))
    return print_results(results, args.json)


def print_results(results: list, as_json: bool) -> int:
    """Search results as a table per query, or as JSON (``--json``)."""
    if as_json:
        print(json.dumps([{"query": r.query, "stages": list(r.stages), "hits": [vars(h) for h in r.hits]}
                          for r in results], ensure_ascii=False, indent=2))
        return 0
    for res in results:
        print(f"\nquery: {res.query}")
        stages = list(res.stages)
        print(f"{'rank':>4}  {'id':<12} " + " ".join(f"{s:>8}" for s in stages) + "  text")
        for h in res.hits:
            text = h.text if len(h.text) <= 70 else h.text[:67] + "..."
            if isinstance(h.metadata.get("image"), str):  # a Visualized-BGE index's document with an image
                text = f"[image {os.path.basename(h.metadata['image'])}] {text}".strip()
            print(f"{h.rank:>4}  {h.id:<12} " + " ".join(f"{h.scores.get(s, float('nan')):8.4f}" for s in stages)
                  + f"  {text}")
    return 0


def extend_search(p: argparse.ArgumentParser, plain, default_corpus: str) -> None:
    """Give `bgekit search` the index options; without --index-dir it runs ``plain`` (the small-corpus search)."""
    p.add_argument("--index-dir", help="search a persisted index (bgekit index build) instead of --corpus")
    p.add_argument("--mode", choices=["dense", "sparse", "hybrid"], default="dense")
    p.add_argument("--fusion", choices=["weighted_sum", "rrf"], default="weighted_sum")
    p.add_argument("--colbert", action="store_true", help="rescore candidates with ColBERT vectors")
    p.add_argument("--candidates", type=positive_int, default=None, help="candidates per signal (default: top-k, or 100)")
    p.add_argument("--reranker", default=None, help="rerank the candidates with this reranker")
    p.add_argument("--rerank-depth", type=positive_int, default=None, help="candidates the reranker scores")
    p.add_argument("--filter", action="append", metavar="FIELD=VALUE", help="exact metadata value, repeatable")
    p.add_argument("--ef-search", type=positive_int, default=None, help="HNSW efSearch")
    p.add_argument("--image", action="append", metavar="PATH",
                   help="an image query (an index built with --visual-weights); with a query text: a composed query")
    p.add_argument("--query", action="append", dest="query_option", metavar="TEXT",
                   help="a query text (as the positional QUERY), repeatable")
    p.add_argument("--visual-weights", default=None, metavar="PTH",
                   help="a Visualized-BGE index: its checkpoint, if moved (default: the file the index records)")
    milvus.add_search_options(p)

    def run(args: argparse.Namespace) -> int:
        args.query = list(args.query or []) + list(args.query_option or [])
        if not args.query and not args.image:
            raise UsageError("give a query text (or --image PATH with --index-dir)")
        if milvus.check_target(args):
            if args.image:
                raise UsageError("--image searches a persisted index built with --visual-weights (--index-dir), "
                                 "not Milvus")
            return milvus.search_milvus(args)
        if args.index_dir:
            return search_index(args)
        args.corpus = args.corpus or default_corpus
        args.model = args.model or DEFAULT_MODEL
        return plain(args)

    p.set_defaults(func=run, model=None)


def _model_args(p: argparse.ArgumentParser, model_help: str) -> None:
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--batch-size", type=positive_int, default=None, help="texts per forward pass (default: the model's)")
    p.add_argument("--max-length", type=positive_int, default=None, help="tokens per text (default: the model's)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    p.add_argument("--device", action="append", help="device, repeatable (default: all GPUs or CPU)")


def register(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser("index", help="build and change a persisted hybrid index")
    isub = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    p = isub.add_parser("build", help="encode a .jsonl corpus into a new index folder")
    p.add_argument("--corpus", required=True, help=".jsonl with id, text (title, metadata optional)")
    p.add_argument("--index-dir", required=True)
    _model_args(p, f"embedder (default: {DEFAULT_MODEL}); BGE-M3 adds sparse vectors")
    p.add_argument("--visual-weights", default=None, metavar="PTH",
                   help="a Visualized-BGE checkpoint (--model: its text model): documents may then have an 'image' "
                        "path (relative to the corpus file's folder) and an optional text; dense vectors only")
    p.add_argument("--colbert", action="store_true", help="BGE-M3: also store ColBERT vectors for rescoring")
    p.add_argument("--dense-only", action="store_true", help="BGE-M3: store dense vectors only")
    p.add_argument("--factory", default="Flat", help="FAISS index: Flat (exact, default), HNSW32, IVF256,Flat ...")
    p.add_argument("--metric", choices=["ip", "l2"], default="ip")
    p.add_argument("--ef-search", type=positive_int, default=None, help="HNSW efSearch recorded with the index")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    importlib.import_module("bgekit.distributed.cli").add_args(p)  # --ray and its options
    p.set_defaults(func=cmd_build)
    p = isub.add_parser("add", help="add (or --upsert) documents from a .jsonl corpus")
    p.add_argument("--index-dir", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--upsert", action="store_true", help="replace documents whose ids exist")
    _model_args(p, "the index's model (default: the one it records)")
    p.add_argument("--visual-weights", default=None, metavar="PTH",
                   help="a Visualized-BGE index: its checkpoint, if moved (default: the file the index records)")
    p.set_defaults(func=cmd_add)
    p = isub.add_parser("delete", help="delete documents by id")
    p.add_argument("--index-dir", required=True)
    p.add_argument("--ids", nargs="+", help="document ids")
    p.add_argument("--ids-file", help="a file with one id per line")
    p.add_argument("--ignore-missing", action="store_true", help="ids not in the index are not an error")
    p.set_defaults(func=cmd_delete)
    p = isub.add_parser("info", help="describe an index")
    p.add_argument("--index-dir", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = isub.add_parser("compact", help="merge the index's segments into one, dropping deleted rows")
    p.add_argument("--index-dir", required=True)
    p.set_defaults(func=cmd_compact)
    p = isub.add_parser("export-qdrant", help="copy an index into a Qdrant collection (named vectors)")
    p.add_argument("--index-dir", required=True)
    p.add_argument("--collection", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--qdrant-url", help="a Qdrant server, e.g. http://127.0.0.1:6333 (key: $QDRANT_API_KEY)")
    where.add_argument("--qdrant-path", help="a local Qdrant folder (qdrant-client local mode)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing collection")
    p.set_defaults(func=cmd_export_qdrant)
    milvus.register_export(isub)
