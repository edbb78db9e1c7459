"""Milvus from the CLI: `bgekit index export-milvus`, and `--milvus-uri URI --collection NAME` for `bgekit search`
and `bgekit serve` in place of `--index-dir`. pymilvus is imported only when one of them runs."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from bgekit.cli.checks import check_devices, check_extras, refuse
from bgekit.errors import UsageError

TOKEN_ENV = "MILVUS_TOKEN"
URI_HELP = "Milvus Lite file (a path ending in .db) or a Milvus server URL, e.g. http://127.0.0.1:19530 (token: $MILVUS_TOKEN)"


def _client(uri: str):
    from bgekit.index.milvus import milvus_client

    check_extras("pymilvus")
    import pymilvus  # noqa: F401 - configures its loggers on import; quiet them after

    # pymilvus and Milvus Lite log every failed call at ERROR, with a traceback, before raising it; the CLI
    # reports the error itself, once
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return milvus_client(uri, token=os.environ.get(TOKEN_ENV))


def check_target(args: argparse.Namespace) -> bool:
    """True when the command targets Milvus (--milvus-uri); refuses a half-given or doubly-given target."""
    uri, collection = getattr(args, "milvus_uri", None), getattr(args, "collection", None)
    if uri and getattr(args, "index_dir", None):
        raise UsageError("give either --index-dir (a local index) or --milvus-uri with --collection (Milvus), not both")
    if bool(uri) != bool(collection):
        raise UsageError("--milvus-uri and --collection go together: the Milvus URI and the collection to search")
    if uri:
        refuse(args, {"--ef-search": None}, "with --milvus-uri (Milvus's own index settles the search)")
    return bool(uri)


def milvus_searcher(args: argparse.Namespace):
    """A MilvusSearcher over --milvus-uri/--collection with --model (default: the collection's model) and --reranker."""
    from bgekit.cli.index import _index_model, _load_reranker
    from bgekit.index.milvus_search import MilvusCollection, MilvusSearcher

    check_devices(args.device)
    client = _client(args.milvus_uri)
    record = MilvusCollection(client, args.collection, args.milvus_uri)  # a wrong name fails before a model loads
    model = _index_model(args, record)  # --model, or the collection's model (a Visualized-BGE one with its weights)
    return MilvusSearcher(client, args.collection, model, _load_reranker(args.reranker, args), uri=args.milvus_uri)


def search_milvus(args: argparse.Namespace) -> int:
    """`bgekit search --milvus-uri URI --collection NAME`: search an exported collection, print a table (or JSON)."""
    from bgekit.cli.index import _parse_filter, print_results

    refuse(args, {"--corpus": None, "--field": None}, "with --milvus-uri (the collection holds the documents)")
    refuse(args, {"--colbert": False}, "with --milvus-uri (ColBERT vectors stay in the local index)")
    if args.mode != "hybrid":
        refuse(args, {"--fusion": "weighted_sum"}, f"with --mode {args.mode} (fusion combines the signals of --mode hybrid)")
    if not args.reranker:
        refuse(args, {"--rerank-depth": None}, "without --reranker")
    searcher = milvus_searcher(args)
    results = searcher.search(list(args.query), top_k=args.top_k, mode=args.mode, fusion=args.fusion,
                              candidates=args.candidates, rerank_depth=args.rerank_depth,
                              filter=_parse_filter(args.filter))
    return print_results(results, args.json)


def add_search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--milvus-uri", default=None, help=f"search a Milvus collection instead: {URI_HELP}")
    p.add_argument("--collection", default=None, help="the Milvus collection (with --milvus-uri)")


def cmd_export_milvus(args: argparse.Namespace) -> int:
    from bgekit.index.milvus import check_collection_name, export_to_milvus
    from bgekit.index.store import open_index

    check_extras("pymilvus", "faiss", "scipy")
    check_collection_name(args.collection)
    store = open_index(args.index_dir)
    client = _client(args.milvus_uri)
    n = export_to_milvus(store, client, args.collection, overwrite=args.overwrite, dense_index=args.dense_index)
    note = "; ColBERT vectors are not exported (they stay in the local index)" if "colbert" in store.outputs else ""
    print(f"exported {n} documents ({', '.join(o for o in store.outputs if o != 'colbert')}) to Milvus collection "
          f"{args.collection!r} at {args.milvus_uri}{note}", file=sys.stderr)
    return 0


def register_export(isub: argparse._SubParsersAction) -> None:
    from bgekit.index.milvus import DENSE_INDEXES

    p = isub.add_parser("export-milvus", help="copy an index into a Milvus collection (Milvus Lite file or server)")
    p.add_argument("--index-dir", required=True)
    p.add_argument("--milvus-uri", required=True, help=URI_HELP)
    p.add_argument("--collection", required=True)
    p.add_argument("--dense-index", choices=list(DENSE_INDEXES), default="FLAT",
                   help="Milvus index over dense vectors (default FLAT: exact, the local Flat index's results)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing collection")
    p.set_defaults(func=cmd_export_milvus)
