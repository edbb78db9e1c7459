"""The server's outer layer: API key, body size and body timeout, request metrics, and fast JSON responses.

:class:`Gate` is plain ASGI middleware in front of every route. It refuses a body larger than the limit (413,
from Content-Length or while reading), and a body that has not fully arrived after ``body_timeout_s`` (408; the
connection is closed), so a client that declares more than it sends cannot hold a connection.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from bgekit.serve.batching import Metrics
from bgekit.serve.schemas import ApiError, error_body, status_for

PUBLIC = {"/", "/health", "/docs", "/openapi.json"}  # the API docs describe routes, never data


def dumps(content: Any) -> bytes:
    """JSON bytes; numpy arrays and scalars are written directly (orjson when installed)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson comes with the serve extra
        return json.dumps(content, default=_plain, separators=(",", ":")).encode()
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _plain(x: Any) -> Any:
    return x.tolist() if hasattr(x, "tolist") else str(x)


def respond(content: Any, status: int = 200, headers: dict | None = None):
    """A JSON response."""
    from starlette.responses import Response

    return Response(dumps(content), status, headers=headers, media_type="application/json")


def error_response(path: str, err: ApiError):
    return respond(error_body(path, err), status_for(path, err), err.headers)


async def send_error(send, path: str, err: ApiError) -> None:
    body = dumps(error_body(path, err))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": status_for(path, err), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes (the server's --max-body-bytes)", "body",
                    "body_too_large")


class Gate:
    """ASGI middleware: API key, body size limit and body timeout, and request metrics."""

    def __init__(self, app, config: Any, metrics: Metrics, routes: set):
        self.app, self.config, self.metrics, self.routes = app, config, metrics, routes
        self.key = config.api_key.encode() if config.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path, start = scope["method"], scope["path"], time.perf_counter()
        route = path if (method, path) in self.routes else "other"
        status = {"code": 500, "started": False}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            denied = self._deny(scope, path)
            if denied is not None:
                return await send_error(send_status, path, denied)
            await self.app(scope, self._reader(scope, receive), send_status)
        finally:
            self.metrics.inc("bgekit_requests_total", {"route": route, "code": str(status["code"])})
            self.metrics.observe("bgekit_request_duration_seconds", time.perf_counter() - start, {"route": route})

    def _reader(self, scope, receive):
        """``receive`` with the size limit and, until the body is complete, the timeout."""
        limit, timeout, state = self.config.max_body_bytes, self.config.body_timeout_s, {"n": 0, "done": False}
        deadline = time.monotonic() + timeout

        async def reader():
            if state["done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                scope["bgekit.error"] = ApiError(408, f"the request body did not arrive within {timeout:g} s",
                                                 "body", "body_timeout", headers={"Connection": "close"})
                raise scope["bgekit.error"] from None
            state["n"] += len(message.get("body", b""))
            state["done"] = message["type"] != "http.request" or not message.get("more_body", False)
            if state["n"] > limit:
                scope["bgekit.error"] = too_large(limit)
                raise scope["bgekit.error"]
            return message

        return reader

    def _deny(self, scope, path: str) -> ApiError | None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.config.max_body_bytes:
            return too_large(self.config.max_body_bytes)
        if self.key is None or path in PUBLIC:
            return None
        given = headers.get(b"authorization", b"")
        token = given[7:] if given[:7].lower() == b"bearer " else b""
        if not hmac.compare_digest(token, self.key):
            return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "authorization",
                            "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return None


async def disconnected(receive) -> None:
    """Return when the client has gone away (call after the request body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
