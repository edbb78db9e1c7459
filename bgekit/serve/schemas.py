"""HTTP request shapes, input parsing and error responses of the server (see :mod:`bgekit.serve`).

Two error shapes, chosen by route: text-embeddings-inference's ``{"error": "...", "error_type": "..."}`` on TEI's
routes; OpenAI's ``{"error": {"message", "type", "param", "code"}}`` everywhere else. Every error names the field
at fault. Status codes follow the API a route imitates: TEI answers 413 for too many or too long inputs and 422
for invalid ones; the OpenAI and Cohere APIs answer 400 for every invalid request (413 only for a body that is
too large), so their official clients raise ``BadRequestError``.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

TEI_ROUTES = frozenset({"/", "/embed", "/embed_sparse", "/embed_all", "/rerank", "/tokenize", "/decode", "/predict",
                        "/similarity"})
# status -> (OpenAI "type", TEI "error_type")
_KINDS = {
    400: ("invalid_request_error", "Validation"),
    401: ("authentication_error", "Unauthorized"),
    404: ("not_found_error", "NotFound"),
    405: ("invalid_request_error", "Validation"),
    408: ("invalid_request_error", "Validation"),
    413: ("invalid_request_error", "Validation"),
    415: ("invalid_request_error", "Validation"),
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


def status_for(path: str, err: ApiError) -> int:
    """The status a route answers: OpenAI-/Cohere-shaped routes turn 413/422 validation errors into 400."""
    if path not in TEI_ROUTES and err.status in (413, 422) and err.code != "body_too_large":
        return 400
    return err.status


def error_body(path: str, err: ApiError) -> dict:
    """The JSON body of an error for a route: TEI's shape on TEI routes, OpenAI's elsewhere."""
    oa_type, tei_type = _KINDS.get(err.status, ("invalid_request_error", "Validation"))
    if path in TEI_ROUTES:
        return {"error": err.message, "error_type": err.tei_type or tei_type}
    if err.status == 503 and err.code != "overloaded":
        oa_type = "server_error"
    return {"error": {"message": err.message, "type": oa_type, "param": err.param, "code": err.code}}


def from_validation(errors: list[dict], status: int, content_type: str = "") -> ApiError:
    """A FastAPI/pydantic validation error list -> one ApiError naming the first bad field."""
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "value_error"}
    loc = [p for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx", {}).get("error", "")
        return ApiError(400, f"the request body is not valid JSON ({ctx})".replace(" ()", ""), "body", "invalid_json")
    if not loc:
        mime = content_type.split(";")[0].strip().lower()
        if mime and mime != "application/json" and not mime.endswith("+json"):
            return ApiError(415, f"the request body must be JSON sent with 'Content-Type: application/json', "
                                 f"got {mime!r}", "content-type", "unsupported_media_type")
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


def inputs(value: Any, field: str, max_items: int, vocab_size: int | None = None) -> tuple[list, bool, bool]:
    """Parse embedding inputs: a string, a list of strings, a list of token ids or a list of such lists.

    Returns:
        (items, was_single, are_token_ids): ``items`` are all strings or all lists of ints.
    """
    if isinstance(value, str):
        return [value], True, False
    if not isinstance(value, list):
        raise ApiError(422, f"{field} must be a string, a list of strings or a list of token ids, got "
                            f"{_json_type(value)}", field)
    if not value:
        raise ApiError(400, f"{field} must not be empty", field, tei_type="Empty")
    if all(_is_int(x) for x in value):  # one input given as token ids
        return [_ids(value, field, vocab_size)], True, True
    kinds = set()
    for i, item in enumerate(value):
        if isinstance(item, str):
            kinds.add("text")
        elif isinstance(item, list) and item and all(_is_int(x) for x in item):
            kinds.add("ids")
        elif isinstance(item, list) and item and all(isinstance(x, str) for x in item):
            raise ApiError(422, f"{field}[{i}] is a list of strings; send each text as its own string in {field}, "
                                "or token ids as a list of integers", f"{field}[{i}]")
        else:
            raise ApiError(422, f"{field}[{i}] must be a string or a non-empty list of token ids (integers), "
                                f"got {_json_type(item)}", f"{field}[{i}]")
    if len(kinds) > 1:
        raise ApiError(422, f"{field} mixes strings and token-id lists; send one kind per request", field)
    _check_count(len(value), field, max_items)
    if "ids" in kinds:
        return [_ids(v, f"{field}[{i}]", vocab_size) for i, v in enumerate(value)], False, True
    return list(value), False, False


def texts(value: Any, field: str, max_items: int) -> tuple[list[str], bool]:
    """A string or a non-empty list of strings (at most ``max_items``) -> (list, was_single)."""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise ApiError(422, f"{field} must be a string or a list of strings, got {_json_type(value)}", field)
    if not value:
        raise ApiError(400, f"{field} must not be empty", field, tei_type="Empty")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ApiError(422, f"{field}[{i}] must be a string, got {_json_type(item)}", f"{field}[{i}]")
    _check_count(len(value), field, max_items)
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


def _check_count(n: int, field: str, max_items: int) -> None:
    if n > max_items:
        raise ApiError(413, f"{field} holds {n} items; the limit per request is {max_items} "
                            "(the server's --max-client-batch-size)", field, "too_many_inputs")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _ids(value: list, field: str, vocab_size: int | None) -> list[int]:
    for j, t in enumerate(value):
        if t < 0 or (vocab_size is not None and t >= vocab_size):
            raise ApiError(422, f"{field}[{j}]: token id {t} is outside the model's vocabulary (0..{vocab_size - 1 if vocab_size else '?'})",
                           f"{field}[{j}]")
    return list(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


Direction = Literal["Right", "right", "Left", "left"]
Role = Optional[Literal["query", "passage", "document", "text"]]


class OpenAIEmbeddingRequest(_Strict):
    input: Any = None
    model: Optional[str] = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None
    input_type: Role = None          # bgekit: which instruction (query / passage)
    truncate: Optional[bool] = None  # bgekit: False refuses over-long inputs instead of cutting them


class EmbedRequest(_Strict):
    inputs: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Direction = "Right"
    normalize: bool = True
    prompt_name: Role = None
    dimensions: Optional[int] = None


class EmbedSparseRequest(_Strict):
    inputs: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Direction = "Right"
    prompt_name: Role = None


class EmbedAllRequest(_Strict):
    inputs: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Direction = "Right"
    prompt_name: Role = None


class RerankRequest(_Strict):
    query: str
    texts: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Direction = "Right"
    raw_scores: bool = False
    return_text: bool = False


class PredictRequest(_Strict):
    inputs: Any = None
    truncate: Optional[bool] = None
    truncation_direction: Direction = "Right"
    raw_scores: bool = False


class SimilarityInputs(_Strict):
    source_sentence: str
    sentences: list[str]


class SimilarityRequest(_Strict):
    inputs: SimilarityInputs
    parameters: Optional[dict[str, Any]] = None


class TokenizeRequest(_Strict):
    inputs: Any = None
    add_special_tokens: bool = True


class DecodeRequest(_Strict):
    ids: Any = None
    skip_special_tokens: bool = True


class CohereRerankRequest(_Strict):
    query: str
    documents: Any = None  # strings or {"text": ...} objects
    model: Optional[str] = None
    top_n: Optional[int] = None
    return_documents: Optional[bool] = None
    max_tokens_per_doc: Optional[int] = None
    truncate: Optional[bool] = None  # bgekit: False refuses over-long pairs instead of cutting them


class CohereEmbedRequest(_Strict):
    texts: Any = None
    model: Optional[str] = None
    input_type: Optional[Literal["search_document", "search_query", "classification", "clustering"]] = None
    embedding_types: Optional[list[Literal["float", "base64"]]] = None
    truncate: Optional[Literal["NONE", "START", "END"]] = None
    output_dimension: Optional[int] = None
    max_tokens: Optional[int] = None


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
