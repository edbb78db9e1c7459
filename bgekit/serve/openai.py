"""OpenAI-compatible routes: ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /v1/models/{id}``.

What the official ``openai`` client and LangChain's ``OpenAIEmbeddings`` send works at their defaults: up to
2,048 inputs per request (strings, or token ids: a list of ints or a list of such lists), ``encoding_format``
base64 or float, ``dimensions``. Inputs longer than the model's limit are cut from the right, and ``usage`` counts
the tokens actually used; ``bgekit serve --strict-length`` (or ``"truncate": false`` in a request) refuses them
instead. Invalid requests answer 400 and an unknown model 404, as the OpenAI API does, so the client raises
``BadRequestError`` / ``NotFoundError``.
"""
from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np

from bgekit.serve.engine import ROLES
from fastapi import Request

from bgekit.serve.gate import respond
from bgekit.serve.schemas import ApiError, OpenAIEmbeddingRequest, inputs

STARTED = int(time.time())


def vector(v: np.ndarray, encoding: str) -> Any:
    """One embedding as OpenAI writes it: little-endian float32 base64, or the array (JSON floats)."""
    return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if encoding == "base64" else v


def dimensions(vectors: list[np.ndarray], dims: int | None, dim: int, normalize: bool,
               field: str = "dimensions") -> list[np.ndarray]:
    """Matryoshka truncation to ``dims`` (re-normalised like ``Embedder(truncate_dim=...)``)."""
    if dims is None or dims == dim:
        return vectors
    if isinstance(dims, bool) or dims < 1 or dims > dim:
        raise ApiError(400, f"{field} must be between 1 and {dim}, got {dims}", field)
    out = [v[:dims] for v in vectors]
    return [v / max(float(np.linalg.norm(v)), 1e-12) for v in out] if normalize else out


def vocab_size(engine) -> int | None:
    return len(engine.tok) if engine.tok is not None else None


def check_ids(engine, are_ids: bool, field: str) -> None:
    if are_ids and not all(hasattr(engine.embedder, a) for a in ("_pad", "_pool", "_finish")):
        raise ApiError(400, f"{field}: token-id inputs are not supported for {type(engine.embedder).__name__}; "
                            "send text", field)


def register(app, ctx) -> None:

    engine, cfg = ctx.engine, ctx.config

    @app.post("/v1/embeddings")
    async def embeddings(req: OpenAIEmbeddingRequest, request: Request):
        model = engine.need("embedder")
        engine.check_model(req.model, engine.model_names)
        if req.dimensions is not None and not 1 <= req.dimensions <= model.dim:
            raise ApiError(400, f"dimensions must be between 1 and {model.dim}, got {req.dimensions}", "dimensions")
        items, _, ids = inputs(req.input, "input", cfg.max_client_batch_size, vocab_size(engine))
        check_ids(engine, ids, "input")
        truncate = not cfg.strict_length if req.truncate is None else req.truncate
        tokens = engine.token_counts(items, "input", truncate, status=400)
        key = ("embed", ROLES[req.input_type], True, "right", ids, engine.limit)
        vectors = await ctx.submit(request, "/v1/embeddings", key, items, tokens)
        vectors = dimensions(vectors, req.dimensions, model.dim, True)
        data = [{"object": "embedding", "index": i, "embedding": vector(v, req.encoding_format)}
                for i, v in enumerate(vectors)]
        used = sum(tokens)
        return respond({"object": "list", "data": data, "model": req.model or engine.model_name,
                        "usage": {"prompt_tokens": used, "total_tokens": used}})

    def card(name: str) -> dict:
        return {"id": name, "object": "model", "created": STARTED, "owned_by": "bgekit"}

    @app.get("/v1/models")
    async def models():
        return respond({"object": "list", "data": [card(n) for n in engine.served_names()]})

    @app.get("/v1/models/{model_id:path}")
    async def model_card(model_id: str):
        names = engine.model_names | engine.reranker_names
        if not (model_id in engine.served_names() or (names and engine.accepts(model_id, names))):
            engine.check_model(model_id, names, "model_id")
        return respond(card(model_id))
