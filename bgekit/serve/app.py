"""The HTTP server: embeddings, sparse embeddings, reranking, tokenization and index search, batched.

Routes, one module per API family (each registers its own):
    :mod:`~bgekit.serve.openai`  POST /v1/embeddings, GET /v1/models, GET /v1/models/{id}
    :mod:`~bgekit.serve.tei`     text-embeddings-inference: POST / (embed, similarity or predict, by body),
                                 /embed, /embed_sparse (BGE-M3), /embed_all, /rerank, /predict, /similarity,
                                 /tokenize, /decode, GET /info
    :mod:`~bgekit.serve.cohere`  POST /v1/rerank (Cohere v1 and Jina), /v2/rerank, /v2/embed
    :mod:`~bgekit.serve.search`  POST /search over the loaded index, GET / (the search page)
    here                         GET /health (503 with the reasons when a model or the index cannot serve),
                                 GET /metrics (Prometheus text)

Concurrent requests are coalesced into batched model calls (:mod:`bgekit.serve.batching`); a full queue answers
503 with Retry-After; the queued work of a client that disconnects is dropped. Errors are JSON naming the field
at fault (:mod:`bgekit.serve.schemas`).

Example:
    >>> app = create_app(embedder=load_embedder("all-MiniLM-L6-v2"))          # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)                          # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Hashable

from bgekit.serve.batching import Batcher, Metrics, QueueFull
from bgekit.serve.engine import Engine, ServeConfig
from bgekit.serve.gate import Gate, disconnected, error_response, respond
from bgekit.serve.schemas import ApiError, TEI_ROUTES, from_validation

__all__ = ["ServeConfig", "create_app"]
FAMILIES = ("openai", "tei", "cohere", "search")
SEARCH_FIELDS = ("top_k", "mode", "fusion", "weights", "colbert", "candidates", "rerank_depth", "rerank", "filter")


class Context:
    """What route modules share: the engine, the batcher, the metrics, and :meth:`submit`."""

    def __init__(self, engine: Engine, batcher: Batcher, metrics: Metrics):
        self.engine, self.batcher, self.metrics, self.config = engine, batcher, metrics, engine.config

    async def submit(self, request: Any, route: str, key: Hashable, items: list, tokens: list[int]) -> list:
        """Queue ``items`` for the model; the results, or an ApiError saying what went wrong.

        When the client disconnects while its work waits, the work is dropped from the queue.
        """
        self.metrics.inc("bgekit_inputs_total", {"route": route}, len(items))
        job = asyncio.ensure_future(self.batcher.submit(key, items, tokens))
        watch = asyncio.ensure_future(disconnected(request.receive))
        try:
            await asyncio.wait((job, watch), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the handler itself was cancelled (shutdown): so is its work
            job.cancel()
            raise
        finally:
            watch.cancel()
        if not job.done():
            job.cancel()
            raise ApiError(499, "the client closed the request", None, "client_closed")
        try:
            return job.result()
        except QueueFull as e:
            raise ApiError(503, str(e), None, "overloaded", headers={"Retry-After": str(self.config.retry_after_s)}) from None
        except ApiError:
            raise
        except ValueError as e:
            from bgekit.index.model_info import IndexModelMismatch

            if isinstance(e, IndexModelMismatch):
                self.engine.problems["index"] = f"the index cannot be searched with this model: {e}"
                raise ApiError(503, f"the index cannot be searched with this server's model: {e}", None,
                               "index_model_mismatch") from None
            raise ApiError(400, str(e), _field_named(str(e))) from None
        except TypeError as e:
            raise ApiError(400, str(e), _field_named(str(e))) from None
        except Exception as e:  # a model failure: this request fails, the server keeps serving
            raise ApiError(500, f"the model failed: {type(e).__name__}: {e}", None, "model_error") from None

    async def rerank_scores(self, request: Any, route: str, query: str, docs: list[str], field: str, truncate: bool,
                            direction: str = "Right", status: int = 413) -> list[float]:
        """Raw reranker scores of (query, doc) pairs, batched; over-long pairs cut or refused (``status``)."""
        self.engine.need("reranker")
        tokens = self.engine.pair_counts(query, docs, field, truncate, status)
        return await self.submit(request, route, ("rerank", direction), [(query, d) for d in docs], tokens)


def _field_named(message: str) -> str | None:
    return next((f for f in SEARCH_FIELDS if re.search(rf"\b{f}\b", message)), None)


def create_app(embedder: Any = None, reranker: Any = None, searcher: Any = None, config: ServeConfig | None = None):
    """Build the FastAPI app serving the given models (any may be None; a searcher brings its own model).

    Args:
        embedder: a bgekit embedder (``load_embedder(...)``); BGE-M3 also serves ``/embed_sparse``.
        reranker: a bgekit reranker (``Reranker``, ``FlagAutoReranker.from_finetuned(...)``...).
        searcher: a :class:`~bgekit.index.search.Searcher` over an index, for ``/search`` and the page.
        config: :class:`ServeConfig` limits and settings.

    Returns:
        A FastAPI application; run it with uvicorn (``bgekit serve`` does), bound to 127.0.0.1 by default.
        ``app.state.engine.probe()`` runs each model once and records what fails (``bgekit serve`` calls it).
    """
    import importlib

    from fastapi import FastAPI

    if embedder is None and reranker is None and searcher is None:
        raise ValueError("create_app needs an embedder, a reranker or a searcher to serve")
    engine = Engine(embedder, reranker, searcher, config)
    cfg, metrics = engine.config, Metrics()
    batcher = Batcher(engine.run, cfg.max_batch_tokens, cfg.max_wait_ms, cfg.max_queue_inputs, metrics, cfg.workers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.close()

    app = FastAPI(title="bgekit", lifespan=lifespan, docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    ctx = Context(engine, batcher, metrics)
    app.state.engine, app.state.batcher, app.state.metrics, app.state.context = engine, batcher, metrics, ctx
    for family in FAMILIES:
        importlib.import_module(f"bgekit.serve.{family}").register(app, ctx)
    _register_common(app, ctx)
    routes = {(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) if m != "HEAD"}
    _register_errors(app, cfg, routes)
    app.add_middleware(Gate, config=cfg, metrics=metrics, routes=routes)
    return app


def _register_common(app, ctx: Context) -> None:
    from starlette.responses import PlainTextResponse

    @app.get("/health")
    async def health():
        state = await asyncio.to_thread(ctx.engine.health)
        state["queued_inputs"] = ctx.batcher.queued_inputs
        return respond(state, 200 if state["status"] == "ok" else 503)

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


def _register_errors(app, cfg: ServeConfig, routes: set) -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(request.url.path, err)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        path = request.url.path
        err = request.scope.get("bgekit.error") or from_validation(
            exc.errors(), 422 if path in TEI_ROUTES else 400, request.headers.get("content-type", ""))
        return error_response(path, err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        path, method = request.url.path, request.method
        if request.scope.get("bgekit.error") is not None:
            err = request.scope["bgekit.error"]
        elif exc.status_code == 404:
            known = ", ".join(f"{m} {p}" for m, p in sorted(routes, key=lambda r: (r[1], r[0])))
            err = ApiError(404, f"no route {method} {path}; routes: {known}", None, "unknown_route")
        elif exc.status_code == 405:
            allowed = ", ".join(sorted(m for m, p in routes if p == path))
            err = ApiError(405, f"{method} is not allowed on {path}; use {allowed}", None, "method_not_allowed",
                           headers={"Allow": allowed})
        else:
            err = ApiError(exc.status_code, str(exc.detail), None)
        return error_response(path, err)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        return error_response(request.url.path, ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))
