"""Index search routes: ``POST /search`` over the loaded index, and ``GET /``, the search page.

A search runs on a model thread like every model call (queries are batched with other searches of the same
options). An index rebuilt under the running server with another model answers 503 naming the mismatch (and
``/health`` reports it), not a 400 about the request.

An index built with a Visualized-BGE model also has ``POST /search/image`` (one image, base64 in JSON, with an
optional query text: the server encodes it) and ``GET /document-image?id=ID``, which serves the image of a
document of the index, found by its id (never a path from the request).
"""
from __future__ import annotations

import json

from fastapi import Request

from bgekit.serve.gate import respond
from bgekit.serve.schemas import ApiError, SearchRequest, texts

FIELDS = ("top_k", "mode", "fusion", "weights", "colbert", "candidates", "rerank_depth", "rerank", "filter")


def register(app, ctx) -> None:
    from fastapi.responses import HTMLResponse

    from bgekit.serve.page import render

    engine, cfg = ctx.engine, ctx.config

    @app.post("/search")
    async def search(req: SearchRequest, request: Request):
        engine.need("index")
        problem = engine.problems.get("index")
        if problem is not None:
            engine.check_index()  # fixed since (the index rebuilt again, with the right model)?
            if "index" in engine.problems:
                raise ApiError(503, engine.problems["index"], None, "index_model_mismatch")
        queries, single = texts(req.query, "query", cfg.max_client_batch_size)
        for name in ("top_k", "candidates", "rerank_depth"):
            value = getattr(req, name)
            if value is not None and not 1 <= value <= cfg.max_top_k:
                raise ApiError(400, f"{name} must be between 1 and {cfg.max_top_k}, got {value}", name)
        options = {f: getattr(req, f) for f in FIELDS if getattr(req, f) is not None}
        tokens = engine.token_counts(queries, "query", True)
        results = await ctx.submit(request, "/search", ("search", json.dumps(options, sort_keys=True)), queries, tokens)
        body = [{"query": r.query, "stages": list(r.stages), "hits": [vars(h) for h in r.hits]} for r in results]
        return respond(body[0] if single else {"results": body})

    @app.get("/")
    async def page():
        status = "Search the index." if engine.searcher is not None else "No index loaded: start with --index-dir."
        return HTMLResponse(render(status, images=_visual(engine)))

    from bgekit.serve import search_image

    search_image.register(app, ctx)


def _visual(engine) -> bool:
    searcher = engine.searcher
    return bool(searcher is not None and getattr(getattr(searcher.store, "model_info", None), "visual", None))
