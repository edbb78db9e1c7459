"""Image routes of an index built with a Visualized-BGE model (see :mod:`bgekit.serve.search`).

- ``POST /search/image``: ``{"image": BASE64 (or a data: URL), "query": optional text, "top_k", "filter"}``;
  the server decodes and encodes the image (with the text: a composed query) and answers as ``POST /search``.
- ``GET /document-image?id=ID``: the image file of the document ``ID``. The path comes from the index (recorded
  when the document was added), never from the request, so only documents' images can be read.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import mimetypes
import os
from typing import Any, Optional

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from bgekit.serve.gate import respond
from bgekit.serve.schemas import ApiError

MAX_PIXELS = 40_000_000  # a decoded upload larger than this is refused (decompression bombs)


class ImageSearchRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    image: str
    query: Optional[str] = None
    top_k: int = 10
    filter: Optional[dict[str, Any]] = None


def _decode(data: str):
    """A PIL image from base64 (or a ``data:image/...;base64,`` URL); ApiError 400 naming what is wrong."""
    from PIL import Image

    if data.startswith("data:"):
        head, _, data = data.partition(",")
        if not head.endswith(";base64"):
            raise ApiError(400, "image: a data: URL must be base64 encoded", "image")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image: not valid base64", "image") from None
    try:
        im = Image.open(io.BytesIO(raw))
        if im.width * im.height > MAX_PIXELS:
            raise ApiError(400, f"image: {im.width}x{im.height} is over {MAX_PIXELS} pixels", "image")
        im.load()
    except (Image.UnidentifiedImageError, OSError) as e:
        raise ApiError(400, f"image: not a readable image ({e})", "image") from None
    return im


def register(app, ctx) -> None:
    from fastapi.responses import FileResponse

    engine, cfg = ctx.engine, ctx.config

    def visual_searcher():
        searcher = engine.need("index")
        if getattr(getattr(searcher.store, "model_info", None), "visual", None) is None:
            raise ApiError(400, "image search needs an index built with a Visualized-BGE model "
                                "(bgekit index build --visual-weights)", "image")
        return searcher

    @app.post("/search/image")
    async def search_image(req: ImageSearchRequest, request: Request):
        searcher = visual_searcher()
        if not 1 <= req.top_k <= cfg.max_top_k:
            raise ApiError(400, f"top_k must be between 1 and {cfg.max_top_k}, got {req.top_k}", "top_k")
        image = _decode(req.image)
        text = req.query.strip() if req.query else None

        def run():
            with engine._search_lock:
                return searcher.search(text or None, images=image, top_k=req.top_k, filter=req.filter, rerank=False)

        try:
            result = await asyncio.to_thread(run)
        except ValueError as e:
            raise ApiError(400, str(e), None) from None
        query = f"[image] {text}" if text else "[image]"
        return respond({"query": query, "stages": list(result.stages), "hits": [vars(h) for h in result.hits]})

    @app.get("/document-image")
    async def document_image(id: str):  # noqa: A002 - the query parameter's name
        store = visual_searcher().store
        row = (await asyncio.to_thread(store.rows, [id])).get(id)
        if row is None:
            raise ApiError(404, f"no document {id!r} in the index", "id")
        meta = (await asyncio.to_thread(store.documents, [row]))[row][3]
        path = meta.get("image")
        if not isinstance(path, str):
            raise ApiError(404, f"document {id!r} has no image", "id")
        if not os.path.isfile(path):
            raise ApiError(404, f"the image of document {id!r} is missing on the server", "id")
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=300"})
