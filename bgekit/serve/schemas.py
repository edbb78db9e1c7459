"""HTTP request shapes and error responses of the server (see :mod:`bgekit.serve`).

Two error shapes, chosen by route: text-embeddings-inference's ``{"error": "...", "error_type": "..."}`` on
``/embed``, ``/embed_sparse``, ``/rerank`` and ``/tokenize``; OpenAI's
``{"error": {"message", "type", "param", "code"}}`` everywhere else. Every error names the field at fault.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

TEI_ROUTES = ("/embed", "/embed_sparse", "/rerank", "/tokenize")
# status -> (OpenAI "type", TEI "error_type")
_KINDS = {
    400: ("invalid_request_error", "Validation"),
    401: ("authentication_error", "Unauthorized"),
    404: ("not_found_error", "NotFound"),
    405: ("invalid_request_error", "Validation"),
    413: ("invalid_request_error", "Validation"),
    422: ("invalid_request_error", "Validation"),
    500: ("server_error", "Backend"),
    503: ("server_busy", "Overloaded"),
}


class ApiError(Exception):
    """An error answered as JSON: status, message, the request field at fault, and optional headers."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None, tei_type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers, self.tei_type = headers or {}, tei_type


def error_body(path: str, err: ApiError) -> dict:
    """The JSON body of an error for a route: TEI's shape on TEI routes, OpenAI's elsewhere."""
    oa_type, tei_type = _KINDS.get(err.status, ("invalid_request_error", "Validation"))
    if path in TEI_ROUTES:
        return {"error": err.message, "error_type": err.tei_type or tei_type}
    return {"error": {"message": err.message, "type": oa_type, "param": err.param, "code": err.code}}


def from_validation(errors: list[dict], status: int) -> ApiError:
    """A FastAPI/pydantic validation error list -> one ApiError naming the first bad field."""
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "value_error"}
    loc = [p for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx", {}).get("error", "")
        return ApiError(400, f"the request body is not valid JSON ({ctx})".replace(" ()", ""), "body", "invalid_json")
    if not loc:
        if first.get("type") == "missing":
            return ApiError(400, "the request needs a JSON object body", "body")
        return ApiError(status, f"the request body must be a JSON object: {first.get('msg')}", "body")
    param = ""
    for part in loc:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field"
    return ApiError(status, f"{param}: {msg}", param)


def texts(value: Any, field: str, max_items: int) -> tuple[list[str], bool]:
    """A string or a non-empty list of strings (at most ``max_items``) -> (list, was_single)."""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise ApiError(422, f"{field} must be a string or a list of strings, got {_json_type(value)}", field)
    if not value:
        raise ApiError(400, f"{field} must not be empty", field, tei_type="Empty")
    for i, item in enumerate(value):
        if isinstance(item, int) and not isinstance(item, bool) or isinstance(item, list):
            raise ApiError(422, f"{field}[{i}]: token-id inputs are not supported; send text strings", f"{field}[{i}]")
        if not isinstance(item, str):
            raise ApiError(422, f"{field}[{i}] must be a string, got {_json_type(item)}", f"{field}[{i}]")
    if len(value) > max_items:
        raise ApiError(413, f"{field} holds {len(value)} items; the limit per request is {max_items}", field)
    return list(value), False


def documents(value: Any, field: str, max_items: int) -> list[str]:
    """Cohere / Jina documents: strings or ``{"text": ...}`` objects -> texts."""
    if not isinstance(value, list):
        raise ApiError(422, f"{field} must be a list of strings or {{\"text\": ...}} objects, got {_json_type(value)}", field)
    out = []
    for i, d in enumerate(value):
        if isinstance(d, dict) and isinstance(d.get("text"), str):
            d = d["text"]
        if not isinstance(d, str):
            raise ApiError(422, f"{field}[{i}] must be a string or an object with a string \"text\"", f"{field}[{i}]")
        out.append(d)
    return texts(out, field, max_items)[0]


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class OpenAIEmbeddingRequest(_Strict):
    input: Any = None
    model: Optional[str] = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None
    input_type: Optional[Literal["query", "passage", "document", "text"]] = None  # bgekit: which instruction
    truncate: Optional[bool] = None                                               # bgekit: or reject


class EmbedRequest(_Strict):
    inputs: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Literal["Right", "right"] = "Right"
    normalize: bool = True
    prompt_name: Optional[Literal["query", "passage", "document", "text"]] = None
    dimensions: Optional[int] = None


class EmbedSparseRequest(_Strict):
    inputs: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Literal["Right", "right"] = "Right"
    prompt_name: Optional[Literal["query", "passage", "document", "text"]] = None


class RerankRequest(_Strict):
    query: str
    texts: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Literal["Right", "right"] = "Right"
    raw_scores: bool = False
    return_text: bool = False


class TokenizeRequest(_Strict):
    inputs: Any = None
    add_special_tokens: bool = True


class CohereRerankRequest(_Strict):
    query: str
    documents: Any = None  # strings or {"text": ...} objects
    model: Optional[str] = None
    top_n: Optional[int] = None
    return_documents: bool = True
    truncate: Optional[bool] = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    query: Any = None  # a string or a list of strings
    top_k: int = 10
    mode: Literal["dense", "sparse", "hybrid"] = "dense"
    fusion: Literal["weighted_sum", "rrf"] = "weighted_sum"
    weights: Optional[dict[str, Any]] = None
    colbert: bool = False
    candidates: Optional[int] = None
    rerank: Optional[bool] = None
    rerank_depth: Optional[int] = None
    filter: Optional[dict[str, Any]] = None
