"""Cohere-compatible routes: ``POST /v1/rerank`` (Cohere v1, also Jina's shape), ``/v2/rerank`` and ``/v2/embed``.

What ``cohere.Client().rerank`` and ``cohere.ClientV2().rerank`` / ``.embed`` send works at their defaults: up to
1,000 documents (the server's ``--max-client-batch-size``, 2,048 by default), strings or ``{"text": ...}``
objects. ``max_tokens_per_doc`` cuts each document to that many tokens, as Cohere's API does, and a (query,
document) pair longer than the reranker's limit is cut from the document's end unless the server runs with
``--strict-length``. Scores are the reranker's sigmoid (``relevance_score`` in [0, 1]).
"""
from __future__ import annotations

import base64
import uuid

import numpy as np

from fastapi import Request

from bgekit.serve.gate import respond
from bgekit.serve.openai import dimensions
from bgekit.serve.schemas import ApiError, CohereEmbedRequest, CohereRerankRequest, documents, texts
from bgekit.serve.tei import sigmoid

EMBED_ROLES = {None: "text", "search_query": "query", "search_document": "passage", "classification": "text",
               "clustering": "text"}


def cut_docs(tok, docs: list[str], max_tokens: int) -> list[str]:
    """Each document cut to its first ``max_tokens`` tokens (the text up to the end of the last kept token)."""
    enc = tok(docs, add_special_tokens=False, return_offsets_mapping=True)
    return [d if len(offs) <= max_tokens else d[: offs[max_tokens - 1][1]] for d, offs in zip(docs, enc["offset_mapping"])]


async def rerank(ctx, request, req: CohereRerankRequest, route: str, return_documents: bool) -> dict:
    """Cohere's rerank response: results sorted by relevance (sigmoid of the reranker's score)."""
    engine, cfg = ctx.engine, ctx.config
    engine.need("reranker")
    engine.check_model(req.model, engine.reranker_names)
    docs = documents(req.documents, "documents", cfg.max_client_batch_size)
    if req.top_n is not None and req.top_n < 1:
        raise ApiError(400, f"top_n must be a positive integer, got {req.top_n}", "top_n")
    scored = docs
    if req.max_tokens_per_doc is not None:
        if req.max_tokens_per_doc < 1:
            raise ApiError(400, f"max_tokens_per_doc must be a positive integer, got {req.max_tokens_per_doc}",
                           "max_tokens_per_doc")
        scored = cut_docs(engine.rtok, docs, req.max_tokens_per_doc)
    truncate = not cfg.strict_length if req.truncate is None else req.truncate
    raw = await ctx.rerank_scores(request, route, req.query, scored, "documents", truncate, status=400)
    scores = sigmoid(raw)
    order = sorted(range(len(docs)), key=lambda i: -scores[i])[: req.top_n]
    results = [{"index": i, "relevance_score": float(scores[i]),
                **({"document": {"text": docs[i]}} if return_documents else {})} for i in order]
    used = sum(engine.pair_counts(req.query, scored, "documents", True))
    return {"id": uuid.uuid4().hex, "model": req.model or engine.reranker_name, "results": results,
            "meta": {"api_version": {"version": "2" if route == "/v2/rerank" else "1"},
                     "billed_units": {"search_units": 1}, "tokens": {"input_tokens": used}},
            "usage": {"total_tokens": used}}


def register(app, ctx) -> None:
    engine, cfg = ctx.engine, ctx.config

    @app.post("/v1/rerank")
    async def rerank_v1(req: CohereRerankRequest, request: Request):
        keep = True if req.return_documents is None else req.return_documents  # Jina's default; Cohere v1 sends it
        return respond(await rerank(ctx, request, req, "/v1/rerank", keep))

    @app.post("/v2/rerank")
    async def rerank_v2(req: CohereRerankRequest, request: Request):
        return respond(await rerank(ctx, request, req, "/v2/rerank", bool(req.return_documents)))

    @app.post("/v2/embed")
    async def embed_v2(req: CohereEmbedRequest, request: Request):
        model = engine.need("embedder")
        engine.check_model(req.model, engine.model_names)
        items, _ = texts(req.texts, "texts", cfg.max_client_batch_size)
        types = req.embedding_types or ["float"]
        truncate = req.truncate or ("NONE" if cfg.strict_length else "END")
        limit = engine.limit
        if req.max_tokens is not None:
            if req.max_tokens < 1:
                raise ApiError(400, f"max_tokens must be a positive integer, got {req.max_tokens}", "max_tokens")
            limit = min(limit, req.max_tokens)
        tokens = engine.token_counts(items, "texts", truncate != "NONE", status=400, limit=limit)
        side = "left" if truncate == "START" else "right"
        key = ("embed", EMBED_ROLES[req.input_type], True, side, False, limit)
        vectors = await ctx.submit(request, "/v2/embed", key, items, tokens)
        vectors = dimensions(vectors, req.output_dimension, model.dim, True, "output_dimension")
        out = {}
        if "float" in types:
            out["float"] = np.stack(vectors)
        if "base64" in types:
            out["base64"] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        return respond({"id": uuid.uuid4().hex, "embeddings": out, "texts": items, "response_type": "embeddings_by_type",
                        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(tokens)}}})
