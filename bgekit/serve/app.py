"""The HTTP server: embeddings, sparse embeddings, reranking, tokenization and index search, batched.

Routes:
    POST /v1/embeddings   OpenAI's request and response (``encoding_format`` float or base64, ``dimensions``)
    POST /embed           text-embeddings-inference (TEI); also /embed_sparse (BGE-M3), /rerank, /tokenize
    POST /v1/rerank       Cohere / Jina style reranking
    POST /search          search the loaded index (dense / sparse / hybrid, ColBERT, rerank, filter)
    GET  /health, /info, /metrics (Prometheus text), /  (a small search page)

Concurrent requests are coalesced into batched model calls (:mod:`bgekit.serve.batching`); a full queue answers
503 with Retry-After. Errors are JSON naming the field at fault (:mod:`bgekit.serve.schemas`).

Example:
    >>> app = create_app(embedder=load_embedder("all-MiniLM-L6-v2"))          # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)                          # doctest: +SKIP
"""
from __future__ import annotations

import base64
import contextlib
import hmac
import json
import time
import uuid
from typing import Any

import numpy as np

from bgekit.serve.batching import Batcher, Metrics, QueueFull
from bgekit.serve.engine import ROLES, Engine, ServeConfig
from bgekit.serve.schemas import (
    ApiError, CohereRerankRequest, EmbedRequest, EmbedSparseRequest, OpenAIEmbeddingRequest, RerankRequest,
    SearchRequest, TokenizeRequest, documents, error_body, from_validation, texts,
)

__all__ = ["ServeConfig", "create_app"]
ROUTES = {("POST", "/v1/embeddings"), ("POST", "/embed"), ("POST", "/embed_sparse"), ("POST", "/rerank"),
          ("POST", "/tokenize"), ("POST", "/v1/rerank"), ("POST", "/search"), ("GET", "/health"), ("GET", "/info"),
          ("GET", "/metrics"), ("GET", "/")}
PUBLIC = {"/", "/health"}
_SEARCH_FIELDS = ("top_k", "mode", "fusion", "weights", "colbert", "candidates", "rerank_depth", "rerank", "filter")


def _sigmoid(scores: list[float]) -> list[float]:
    from bgekit.reranker_inputs import sigmoid

    return sigmoid(scores)


def _vector(v: np.ndarray, encoding: str) -> Any:
    return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if encoding == "base64" else v.tolist()


def _dimensions(vectors: list[np.ndarray], dims: int | None, dim: int, normalize: bool) -> list[np.ndarray]:
    """Matryoshka truncation to ``dims`` (re-normalised like ``Embedder(truncate_dim=...)``)."""
    if dims is None or dims == dim:
        return vectors
    if dims < 1 or dims > dim:
        raise ApiError(400, f"dimensions must be between 1 and {dim}, got {dims}", "dimensions")
    out = [v[:dims] for v in vectors]
    return [v / max(float(np.linalg.norm(v)), 1e-12) for v in out] if normalize else out


class _Gate:
    """ASGI middleware: API key, body size limit, and request metrics."""

    def __init__(self, app, config: ServeConfig, metrics: Metrics):
        self.app, self.config, self.metrics = app, config, metrics
        self.key = config.api_key.encode() if config.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path, start = scope["method"], scope["path"], time.perf_counter()
        route = path if (method, path) in ROUTES else "other"
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            denied = self._deny(scope, path)
            if denied is not None:
                return await _send_error(send_status, path, denied)
            limit, seen = self.config.max_body_bytes, {"n": 0}

            async def capped():
                message = await receive()
                seen["n"] += len(message.get("body", b""))
                if seen["n"] > limit:
                    scope["bgekit.too_large"] = True
                    raise ApiError(413, f"the request body is larger than {limit} bytes", "body", "body_too_large")
                return message

            await self.app(scope, capped, send_status)
        finally:
            self.metrics.inc("bgekit_requests_total", {"route": route, "code": str(status["code"])})
            self.metrics.observe("bgekit_request_duration_seconds", time.perf_counter() - start, {"route": route})

    def _deny(self, scope, path: str) -> ApiError | None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.config.max_body_bytes:
            return ApiError(413, f"the request body is larger than {self.config.max_body_bytes} bytes", "body",
                            "body_too_large")
        if self.key is None or path in PUBLIC:
            return None
        given = headers.get(b"authorization", b"")
        token = given[7:] if given[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(token, self.key):
            return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "authorization",
                            "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return None


async def _send_error(send, path: str, err: ApiError) -> None:
    body = json.dumps(error_body(path, err)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(embedder: Any = None, reranker: Any = None, searcher: Any = None, config: ServeConfig | None = None):
    """Build the FastAPI app serving the given models (any may be None; a searcher brings its own model).

    Args:
        embedder: a bgekit embedder (``load_embedder(...)``); BGE-M3 also serves ``/embed_sparse``.
        reranker: a bgekit reranker (``Reranker``, ``FlagAutoReranker.from_finetuned(...)``...).
        searcher: a :class:`~bgekit.index.search.Searcher` over an index, for ``/search`` and the page.
        config: :class:`ServeConfig` limits and settings.

    Returns:
        A FastAPI application; run it with uvicorn (``bgekit serve`` does), bound to 127.0.0.1 by default.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException

    from bgekit.serve.page import render

    if embedder is None and reranker is None and searcher is None:
        raise ValueError("create_app needs an embedder, a reranker or a searcher to serve")
    engine = Engine(embedder, reranker, searcher, config)
    cfg, metrics = engine.config, Metrics()
    batcher = Batcher(engine.run, cfg.max_batch_tokens, cfg.max_wait_ms, cfg.max_queue_inputs, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.close()

    app = FastAPI(title="bgekit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.batcher, app.state.metrics = engine, batcher, metrics

    async def submit(route: str, key: tuple, items: list, tokens: list[int]) -> list:
        metrics.inc("bgekit_inputs_total", {"route": route}, len(items))
        try:
            return await batcher.submit(key, items, tokens)
        except QueueFull as e:
            raise ApiError(503, str(e), None, "overloaded", headers={"Retry-After": str(cfg.retry_after_s)}) from None
        except ApiError:
            raise
        except (ValueError, TypeError) as e:
            raise ApiError(400, str(e), next((f for f in _SEARCH_FIELDS if f in str(e)), None)) from None
        except Exception as e:  # a model failure: this request fails, the server keeps serving
            raise ApiError(500, f"the model failed: {type(e).__name__}: {e}", None, "model_error") from None

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return JSONResponse(error_body(request.url.path, err), err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return await api_error(request, from_validation(exc.errors(), 422 if request.url.path in
                                                        ("/embed", "/embed_sparse", "/rerank", "/tokenize") else 400))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        path, method = request.url.path, request.method
        if request.scope.get("bgekit.too_large"):
            err = ApiError(413, f"the request body is larger than {cfg.max_body_bytes} bytes", "body", "body_too_large")
        elif exc.status_code == 404:
            known = ", ".join(f"{m} {p}" for m, p in sorted(ROUTES, key=lambda r: r[1]))
            err = ApiError(404, f"no route {method} {path}; routes: {known}", None, "unknown_route")
        elif exc.status_code == 405:
            allowed = ", ".join(m for m, p in ROUTES if p == path)
            err = ApiError(405, f"{method} is not allowed on {path}; use {allowed}", None, "method_not_allowed",
                           headers={"Allow": allowed})
        else:
            err = ApiError(exc.status_code, str(exc.detail), None)
        return await api_error(request, err)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        return await api_error(request, ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))

    @app.post("/v1/embeddings")
    async def openai_embeddings(req: OpenAIEmbeddingRequest):
        model = engine.need("embedder")
        engine.check_model(req.model, engine.model_names)
        items, _ = texts(req.input, "input", cfg.max_client_batch_size)
        tokens = engine.token_counts(items, "input", req.truncate)
        vectors = await submit("/v1/embeddings", ("embed", ROLES[req.input_type], True), items, tokens)
        vectors = _dimensions(vectors, req.dimensions, model.dim, True)
        data = [{"object": "embedding", "index": i, "embedding": _vector(v, req.encoding_format)} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
        return JSONResponse({"object": "list", "data": data, "model": engine.model_name, "usage": usage})

    @app.post("/embed")
    async def tei_embed(req: EmbedRequest):
        model = engine.need("embedder")
        items, _ = texts(req.inputs, "inputs", cfg.max_client_batch_size)
        tokens = engine.token_counts(items, "inputs", req.truncate)
        vectors = await submit("/embed", ("embed", ROLES[req.prompt_name], req.normalize), items, tokens)
        return JSONResponse([v.tolist() for v in _dimensions(vectors, req.dimensions, model.dim, req.normalize)])

    @app.post("/embed_sparse")
    async def tei_embed_sparse(req: EmbedSparseRequest):
        model = engine.need("embedder")
        if not hasattr(model, "encode_multi"):
            raise ApiError(400, f"{engine.model_name!r} has no sparse output; /embed_sparse needs a BGE-M3 model")
        items, _ = texts(req.inputs, "inputs", cfg.max_client_batch_size)
        tokens = engine.token_counts(items, "inputs", req.truncate)
        out = await submit("/embed_sparse", ("sparse", ROLES[req.prompt_name]), items, tokens)
        return JSONResponse([[{"index": int(i), "value": float(v)} for i, v in zip(s.indices, s.values)] for s in out])

    async def rerank_scores(route: str, query: str, docs: list[str], field: str, truncate: bool | None) -> list[float]:
        engine.need("reranker")
        tokens = engine.pair_counts(query, docs, field, truncate)
        return await submit(route, ("rerank",), [(query, d) for d in docs], tokens)

    @app.post("/rerank")
    async def tei_rerank(req: RerankRequest):
        engine.need("reranker")
        docs, _ = texts(req.texts, "texts", cfg.max_client_batch_size)
        raw = await rerank_scores("/rerank", req.query, docs, "texts", req.truncate)
        scores = raw if req.raw_scores else _sigmoid(raw)
        order = sorted(range(len(docs)), key=lambda i: -scores[i])
        return JSONResponse([{"index": i, "score": float(scores[i]), **({"text": docs[i]} if req.return_text else {})}
                             for i in order])

    @app.post("/v1/rerank")
    async def cohere_rerank(req: CohereRerankRequest):
        engine.need("reranker")
        engine.check_model(req.model, engine.reranker_names)
        docs = documents(req.documents, "documents", cfg.max_client_batch_size)
        if req.top_n is not None and req.top_n < 1:
            raise ApiError(400, f"top_n must be a positive integer, got {req.top_n}", "top_n")
        scores = _sigmoid(await rerank_scores("/v1/rerank", req.query, docs, "documents", req.truncate))
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: req.top_n]
        results = [{"index": i, "relevance_score": float(scores[i]),
                    **({"document": {"text": docs[i]}} if req.return_documents else {})} for i in order]
        return JSONResponse({"id": uuid.uuid4().hex, "model": engine.reranker_name, "results": results,
                             "usage": {"total_tokens": sum(engine.pair_counts(req.query, docs, "documents", True))}})

    @app.post("/tokenize")
    async def tei_tokenize(req: TokenizeRequest):
        tok = engine.tok or engine.rtok
        items, _ = texts(req.inputs, "inputs", cfg.max_client_batch_size)
        enc = tok(items, add_special_tokens=req.add_special_tokens, return_offsets_mapping=True)
        special = set(tok.all_special_ids)
        out = []
        for text, ids, offsets in zip(items, enc["input_ids"], enc["offset_mapping"]):
            out.append([{"id": int(t), "text": tok.convert_ids_to_tokens(int(t)) if t in special else text[a:b],
                         "special": t in special, "start": None if t in special else a, "stop": None if t in special else b}
                        for t, (a, b) in zip(ids, offsets)])
        return JSONResponse(out)

    @app.post("/search")
    async def search(req: SearchRequest):
        engine.need("index")
        queries, single = texts(req.query, "query", cfg.max_client_batch_size)
        for name in ("top_k", "candidates", "rerank_depth"):
            value = getattr(req, name)
            if value is not None and not 1 <= value <= cfg.max_top_k:
                raise ApiError(400, f"{name} must be between 1 and {cfg.max_top_k}, got {value}", name)
        options = {f: getattr(req, f) for f in _SEARCH_FIELDS if getattr(req, f) is not None}
        tokens = engine.token_counts(queries, "query", True)
        results = await submit("/search", ("search", json.dumps(options, sort_keys=True)), queries, tokens)
        body = [{"query": r.query, "stages": list(r.stages), "hits": [vars(h) for h in r.hits]} for r in results]
        return JSONResponse(body[0] if single else {"results": body})

    @app.get("/health")
    async def health():
        store = engine.searcher.store if engine.searcher is not None else None
        return {"status": "ok", "model": engine.model_name, "reranker": engine.reranker_name,
                "index": None if store is None else {"path": store.path, "generation": store.generation, "count": store.count},
                "queued_inputs": batcher.queued_inputs}

    @app.get("/info")
    async def info():
        return {"model_id": engine.model_name, "reranker_id": engine.reranker_name, "max_input_length": engine.limit,
                "max_batch_tokens": cfg.max_batch_tokens, "max_client_batch_size": cfg.max_client_batch_size,
                "max_queue_inputs": cfg.max_queue_inputs, "version": __import__("bgekit").__version__}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page():
        status = "Search the index." if engine.searcher is not None else "No index loaded: start with --index-dir."
        return HTMLResponse(render(status))

    app.add_middleware(_Gate, config=cfg, metrics=metrics)
    return app
