"""`bgekit serve`: the HTTP server over a model, a reranker and/or an index (see :mod:`bgekit.serve`)."""
from __future__ import annotations

import argparse
import os
import sys

from bgekit.cli.index import DEFAULT_MODEL, _index_model, _load_model, _load_reranker, _model_args, _search_params

# On CPU every padded token costs compute: small length-sorted sub-batches served SciFact queries 1.5x faster
# than 64 or 256 (benchmarks/bench_serve.py, bf16, 2-core CPU); on GPUs the model's own default is kept.
SERVE_CPU_BATCH = 16


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bgekit.serve import create_app
    from bgekit.serve.engine import ServeConfig

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size is None and not torch.cuda.is_available():
        args.batch_size = SERVE_CPU_BATCH
    api_key = args.api_key or os.environ.get("BGEKIT_API_KEY") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"warning: serving on {args.host} without an API key; anyone who can reach it can use it", file=sys.stderr)
    searcher = None
    if args.index_dir:
        from bgekit.index.search import Searcher
        from bgekit.index.store import open_index

        store = open_index(args.index_dir, search_params=_search_params(args))
        searcher = Searcher(store, _index_model(args, store), _load_reranker(args.reranker, args))
    embedder = None if searcher else _load_model(args.model or DEFAULT_MODEL, args)
    reranker = None if searcher else _load_reranker(args.reranker, args)
    config = ServeConfig(max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
                         max_queue_inputs=args.max_queue, max_client_batch_size=args.max_client_batch_size,
                         max_input_tokens=args.max_input_tokens, truncate=args.truncate, api_key=api_key)
    app = create_app(embedder=embedder, reranker=reranker, searcher=searcher, config=config)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if not args.verbose else "info")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP server: OpenAI / TEI embeddings, reranking, index search")
    _model_args(p, f"embedder (default: {DEFAULT_MODEL}, or the index's model with --index-dir)")
    p.add_argument("--reranker", default=None, help="reranker model for /rerank, /v1/rerank and search")
    p.add_argument("--index-dir", default=None, help="serve /search over this index")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set $BGEKIT_API_KEY)")
    p.add_argument("--max-batch-tokens", type=int, default=16384)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--max-queue", type=int, default=4096, help="queued inputs before 503")
    p.add_argument("--max-client-batch-size", type=int, default=32, help="inputs per request")
    p.add_argument("--max-input-tokens", type=int, default=None, help="tokens per input (default: the model's)")
    p.add_argument("--truncate", action="store_true", help="truncate long inputs by default instead of 413")
    p.add_argument("--ef-search", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_serve)
