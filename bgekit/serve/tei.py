"""text-embeddings-inference (TEI) routes, with TEI's request shapes, semantics and error statuses.

``POST /`` dispatches as TEI does: a body whose ``inputs`` is ``{"source_sentence", "sentences"}`` is a similarity
request; otherwise it embeds (or, on a server with only a reranker, predicts). ``parameters`` (what
``huggingface_hub.InferenceClient`` sends) are merged into the request. ``truncate`` defaults to the server's
``--truncate`` (TEI's ``--auto-truncate``); without it an input over the limit gets 413. ``truncation_direction``
``Left`` keeps the end of a long input. Token ids (a list of ints, or a list of such lists) are used as given.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from bgekit.serve.engine import ROLES
from fastapi import Request

from bgekit.serve.gate import respond
from bgekit.serve.openai import check_ids, dimensions, vocab_size
from bgekit.serve.schemas import (
    ApiError, DecodeRequest, EmbedAllRequest, EmbedRequest, EmbedSparseRequest, PredictRequest, RerankRequest,
    SimilarityRequest, TokenizeRequest, from_validation, inputs, texts,
)


def sigmoid(scores: list[float]) -> list[float]:
    from bgekit.reranker_inputs import sigmoid as _sigmoid

    return _sigmoid(scores)


async def read_json(request) -> Any:
    """The parsed JSON body (for routes that dispatch on it), or a 400/415 saying what is wrong."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError as e:
        mime = request.headers.get("content-type", "").split(";")[0].strip()
        if mime and mime != "application/json":
            raise ApiError(415, f"the request body must be JSON sent with 'Content-Type: application/json', got "
                                f"{mime!r}", "content-type", "unsupported_media_type") from None
        raise ApiError(400, f"the request body is not valid JSON ({e})", "body", "invalid_json") from None


def validate(model: type, body: Any):
    from pydantic import ValidationError

    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object", "body")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise from_validation(e.errors(), 422) from None


def _truncate(engine, value: bool | None) -> bool:
    return engine.config.truncate if value is None else value


async def embed(ctx, request, req: EmbedRequest, route: str) -> list[np.ndarray]:
    """Vectors for an /embed-shaped request (also behind /similarity and POST /)."""
    engine = ctx.engine
    model = engine.need("embedder")
    if req.dimensions is not None and not 1 <= req.dimensions <= model.dim:
        raise ApiError(422, f"dimensions must be between 1 and {model.dim}, got {req.dimensions}", "dimensions")
    items, _, ids = inputs(req.inputs, "inputs", ctx.config.max_client_batch_size, vocab_size(engine))
    check_ids(engine, ids, "inputs")
    tokens = engine.token_counts(items, "inputs", _truncate(engine, req.truncate))
    key = ("embed", ROLES[req.prompt_name], req.normalize, req.truncation_direction, ids, engine.limit)
    vectors = await ctx.submit(request, route, key, items, tokens)
    return dimensions(vectors, req.dimensions, model.dim, req.normalize)


async def similarity(ctx, request, req: SimilarityRequest) -> list[float]:
    """Cosine similarity of the source sentence to each sentence."""
    if not req.inputs.sentences:
        raise ApiError(400, "inputs.sentences must not be empty", "inputs.sentences", tei_type="Empty")
    params = validate(EmbedRequest, {**(req.parameters or {}), "normalize": True,
                                     "inputs": [req.inputs.source_sentence, *req.inputs.sentences]})
    vectors = np.stack(await embed(ctx, request, params, "/similarity"))  # (1 + N, D)
    return [float(x) for x in vectors[1:] @ vectors[0]]


async def predict(ctx, request, req: PredictRequest) -> list:
    """TEI's sequence classification, served by the reranker: one label per (query, text) pair."""
    engine = ctx.engine
    if engine.reranker is None:
        raise ApiError(400, "this server has no classifier loaded; /predict scores (query, text) pairs with a "
                            "reranker: start it with --reranker", None, "not_loaded")
    pairs, single = _pairs(req.inputs, ctx.config.max_client_batch_size)
    tokens = [n for q, d in pairs for n in engine.pair_counts(q, [d], "inputs", _truncate(engine, req.truncate))]
    raw = await ctx.submit(request, "/predict", ("rerank", req.truncation_direction), pairs, tokens)
    scores = raw if req.raw_scores else sigmoid(raw)
    label = getattr(getattr(getattr(engine.reranker, "model", None), "config", None), "id2label", {}).get(0, "LABEL_0")
    out = [[{"score": float(s), "label": label}] for s in scores]
    return out[0] if single else out


def register(app, ctx) -> None:
    _register_embedding(app, ctx)
    _register_pairs_and_tokens(app, ctx)


def _register_embedding(app, ctx) -> None:
    engine, cfg = ctx.engine, ctx.config

    @app.post("/embed")
    async def tei_embed(req: EmbedRequest, request: Request):
        return respond(await embed(ctx, request, req, "/embed"))

    @app.post("/similarity")
    async def tei_similarity(req: SimilarityRequest, request: Request):
        return respond(await similarity(ctx, request, req))

    @app.post("/")
    async def tei_root(request: Request):
        body = await read_json(request)
        if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
            body = {**body["parameters"], **{k: v for k, v in body.items() if k != "parameters"}}
        if isinstance(body, dict) and isinstance(body.get("inputs"), dict):
            params = {k: v for k, v in body.items() if k != "inputs"}
            return respond(await similarity(ctx, request, validate(SimilarityRequest, {"inputs": body["inputs"],
                                                                                       "parameters": params})))
        if engine.embedder is None and engine.reranker is not None:
            return respond(await predict(ctx, request, validate(PredictRequest, body)))
        return respond(await embed(ctx, request, validate(EmbedRequest, body), "/"))

    @app.post("/embed_sparse")
    async def tei_embed_sparse(req: EmbedSparseRequest, request: Request):
        model = engine.need("embedder")
        if not hasattr(model, "encode_multi"):
            raise ApiError(400, f"{engine.model_name!r} has no sparse output; /embed_sparse needs a BGE-M3 model")
        items, _ = texts(req.inputs, "inputs", cfg.max_client_batch_size)
        tokens = engine.token_counts(items, "inputs", _truncate(engine, req.truncate))
        key = ("sparse", ROLES[req.prompt_name], req.truncation_direction)
        out = await ctx.submit(request, "/embed_sparse", key, items, tokens)
        return respond([[{"index": int(i), "value": float(v)} for i, v in zip(s.indices, s.values)] for s in out])

    @app.post("/embed_all")
    async def tei_embed_all(req: EmbedAllRequest, request: Request):
        engine.need("embedder")
        if req.prompt_name is not None:
            raise ApiError(422, "prompt_name is not supported on /embed_all (token states have no instruction)",
                           "prompt_name")
        items, _ = texts(req.inputs, "inputs", cfg.max_client_batch_size)
        tokens = engine.token_counts(items, "inputs", _truncate(engine, req.truncate))
        out = await ctx.submit(request, "/embed_all", ("embed_all", None, req.truncation_direction), items, tokens)
        return respond(out)


def _register_pairs_and_tokens(app, ctx) -> None:
    engine, cfg = ctx.engine, ctx.config

    @app.post("/rerank")
    async def tei_rerank(req: RerankRequest, request: Request):
        engine.need("reranker")
        docs, _ = texts(req.texts, "texts", cfg.max_client_batch_size)
        raw = await ctx.rerank_scores(request, "/rerank", req.query, docs, "texts", _truncate(engine, req.truncate),
                                      req.truncation_direction)
        scores = raw if req.raw_scores else sigmoid(raw)
        order = sorted(range(len(docs)), key=lambda i: -scores[i])
        return respond([{"index": i, "score": float(scores[i]), **({"text": docs[i]} if req.return_text else {})}
                        for i in order])

    @app.post("/predict")
    async def tei_predict(req: PredictRequest, request: Request):
        return respond(await predict(ctx, request, req))

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
        return respond(out)

    @app.post("/decode")
    async def tei_decode(req: DecodeRequest):
        tok = engine.tok or engine.rtok
        items, _, ids = inputs(req.ids, "ids", cfg.max_client_batch_size, len(tok))
        if not ids:
            raise ApiError(422, "ids must be a list of token ids (integers) or a list of such lists", "ids")
        return respond([tok.decode(x, skip_special_tokens=req.skip_special_tokens) for x in items])

    @app.get("/info")
    async def info():
        return respond(_info(engine))


def _pairs(value: Any, max_items: int) -> tuple[list[tuple[str, str]], bool]:
    """TEI's predict inputs: ``[a, b]`` (one pair) or ``[[a, b], ...]``; a reranker needs pairs."""
    def pair(x: Any, where: str) -> tuple[str, str]:
        if isinstance(x, list) and len(x) == 2 and all(isinstance(s, str) for s in x):
            return x[0], x[1]
        if isinstance(x, str) or (isinstance(x, list) and len(x) == 1 and isinstance(x[0], str)):
            raise ApiError(422, f"{where}: a reranker scores pairs; send [query, text], not a single text", where)
        raise ApiError(422, f"{where} must be a pair [query, text] of strings", where)

    if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
        return [pair(value, "inputs")], True
    if not isinstance(value, list) or not value:
        raise ApiError(422, "inputs must be a pair [query, text] or a non-empty list of pairs", "inputs")
    if len(value) > max_items:
        raise ApiError(413, f"inputs holds {len(value)} pairs; the limit per request is {max_items}", "inputs")
    return [pair(x, f"inputs[{i}]") for i, x in enumerate(value)], False


def _info(engine) -> dict:
    import bgekit

    e, r, cfg = engine.embedder, engine.reranker, engine.config
    if e is not None:
        kind = {"embedding": {"pooling": getattr(e, "pooling_method", None)}}
        dtype = str(getattr(e, "dtype", "")).replace("torch.", "")
    else:
        labels = getattr(getattr(getattr(r, "model", None), "config", None), "id2label", {0: "LABEL_0"})
        kind = {"reranker": {"id2label": {str(k): v for k, v in labels.items()}}}
        dtype = str(getattr(r, "dtype", "")).replace("torch.", "")
    return {"model_id": engine.model_name or engine.reranker_name, "model_sha": None, "model_dtype": dtype,
            "model_type": kind, "max_concurrent_requests": cfg.max_queue_inputs,
            "max_input_length": engine.limit or engine.rerank_limit, "max_batch_tokens": cfg.max_batch_tokens,
            "max_batch_requests": None, "max_client_batch_size": cfg.max_client_batch_size,
            "auto_truncate": cfg.truncate, "tokenization_workers": 1, "version": bgekit.__version__,
            "sha": None, "docker_label": None,
            "prompts": None, "reranker_id": engine.reranker_name, "served_model_names": engine.served_names(),
            "max_queue_inputs": cfg.max_queue_inputs, "model_workers": cfg.workers}
