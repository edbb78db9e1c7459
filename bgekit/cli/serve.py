"""`bgekit serve`: the HTTP server over a model, a reranker and/or an index (see :mod:`bgekit.serve`).

It prints one line per startup problem (a model that cannot run, an index that does not match the model: the
server still starts, and ``/health`` answers 503 with the same reasons) and, once it accepts connections, one
line with its URL (and the search page's, when an index is loaded).
"""
from __future__ import annotations

import argparse
import os
import sys

from bgekit.cli.checks import positive_float, positive_int
from bgekit.cli.index import DEFAULT_MODEL, _index_model, _load_model, _load_reranker, _model_args, _search_params

# On CPU every padded token costs compute: small length-sorted sub-batches served SciFact queries 1.5x faster
# than 64 or 256 (benchmarks/bench_serve.py, bf16, 2-core CPU); on GPUs the model's own default is kept.
SERVE_CPU_BATCH = 16
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535 (0: any free port), got {text!r}")
    return int(text)


def _threads(args: argparse.Namespace) -> tuple[int, int]:
    """(model workers, torch threads per worker): on CPU one single-threaded worker per core by default."""
    import torch

    from bgekit.backends import cpu_workers

    on_gpu = any(str(d).startswith(("cuda", "mps")) for d in (args.device or [])) or (
        not args.device and torch.cuda.is_available())
    if args.workers is None:
        args.workers = 1 if on_gpu or args.threads else cpu_workers()
    threads = args.threads or (None if on_gpu else 1)
    return args.workers, threads


def cmd_serve(args: argparse.Namespace) -> int:
    from bgekit.serve import create_app
    from bgekit.serve.engine import ServeConfig
    from bgekit.serve.runner import bind, run

    import torch

    workers, threads = _threads(args)
    if threads:
        torch.set_num_threads(threads)
    if args.batch_size is None and not torch.cuda.is_available():
        args.batch_size = SERVE_CPU_BATCH
    api_key = args.api_key or os.environ.get("BGEKIT_API_KEY") or None
    if args.host not in LOOPBACK and not api_key:
        print(f"bgekit serve: warning: serving on {args.host} without an API key; anyone who can reach it can use it",
              file=sys.stderr)
    from bgekit.cli import milvus

    on_milvus = milvus.check_target(args)
    sock = bind(args.host, args.port)  # before loading models: a busy port fails in a second, not after a minute
    searcher = milvus.milvus_searcher(args) if on_milvus else None
    if args.index_dir:
        from bgekit.index.search import Searcher
        from bgekit.index.store import open_index

        store = open_index(args.index_dir, search_params=_search_params(args))
        searcher = Searcher(store, _index_model(args, store), _load_reranker(args.reranker, args))
    embedder = None if searcher else _load_model(args.model or DEFAULT_MODEL, args)
    reranker = None if searcher else _load_reranker(args.reranker, args)
    config = ServeConfig(
        served_model_names=tuple(args.served_model_name or ()), accept_any_model=args.accept_any_model,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue_inputs=args.max_queue,
        max_client_batch_size=args.max_client_batch_size, max_input_tokens=args.max_input_tokens,
        truncate=args.truncate, strict_length=args.strict_length, max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout, api_key=api_key, workers=workers)
    app = create_app(embedder=embedder, reranker=reranker, searcher=searcher, config=config)
    for problem in app.state.engine.probe().values():
        print(f"bgekit serve: problem: {problem} (/health answers 503 until it is fixed)", file=sys.stderr)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def ready() -> None:
        page = f"; search page: {url}/" if searcher is not None else ""
        print(f"bgekit serve: ready on {url} (OpenAI base URL {url}/v1){page}", file=sys.stderr, flush=True)

    try:
        run(app, sock, header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
            log_level="info" if args.verbose else "warning", on_ready=ready)
    except KeyboardInterrupt:  # uvicorn finished the requests in flight, then re-raised Ctrl-C: a normal stop
        pass
    print("bgekit serve: stopped", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP server: OpenAI / TEI / Cohere embeddings and reranking, index search")
    _model_args(p, f"embedder (default: {DEFAULT_MODEL}, or the index's model with --index-dir or --milvus-uri)")
    p.add_argument("--reranker", default=None, help="reranker model for /rerank, /v1/rerank, /v2/rerank and search")
    p.add_argument("--index-dir", default=None, help="serve /search over this index")
    p.add_argument("--milvus-uri", default=None, help="serve /search over a Milvus collection instead (with --collection)")
    p.add_argument("--collection", default=None, help="the Milvus collection (with --milvus-uri)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="default 8080; 0 picks a free port")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set $BGEKIT_API_KEY)")
    p.add_argument("--served-model-name", action="append", metavar="NAME",
                   help="a name clients may send as 'model' (repeatable); the model's own and hub names always work")
    p.add_argument("--accept-any-model", action="store_true", help="accept any 'model' value, as TEI does")
    p.add_argument("--max-batch-tokens", type=positive_int, default=16384, help="tokens per model call")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a request waits for company")
    p.add_argument("--max-queue", type=positive_int, default=16384, help="queued inputs before 503")
    p.add_argument("--max-client-batch-size", type=positive_int, default=2048,
                   help="inputs per request (default 2048, as the OpenAI API)")
    p.add_argument("--max-body-bytes", type=positive_int, default=32 * 1024 * 1024,
                   help="largest request body (default 32 MiB)")
    p.add_argument("--max-input-tokens", type=positive_int, default=None, help="tokens per input (default: the model's)")
    p.add_argument("--truncate", "--auto-truncate", action="store_true",
                   help="TEI routes truncate long inputs when the request does not say (else 413)")
    p.add_argument("--strict-length", action="store_true",
                   help="OpenAI and Cohere routes refuse inputs over the limit (400) instead of truncating them")
    p.add_argument("--header-timeout", type=positive_float, default=10.0, help="seconds for a request's headers")
    p.add_argument("--body-timeout", type=positive_float, default=30.0, help="seconds for a request's body")
    p.add_argument("--idle-timeout", type=positive_float, default=5.0, help="seconds a keep-alive connection may idle")
    p.add_argument("--ef-search", type=int, default=None)
    p.add_argument("--workers", type=positive_int, default=None,
                   help="model worker threads (default on CPU: one per core, each single-threaded)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default on CPU: 1 per worker; with --threads alone: one worker)")
    p.set_defaults(func=cmd_serve)
