"""What the server runs: the loaded models, input limits, and the one function the model thread calls.

Every model call of the server goes through :meth:`Engine.run`, on the batcher's single model thread, so the
models are never used from two threads at once. Token counting for limits uses private copies of the
tokenizers on the event-loop thread (a fast tokenizer must not be shared across threads).
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from bgekit.serve.schemas import ApiError

ROLES = {None: "text", "text": "text", "query": "query", "passage": "passage", "document": "passage"}


@dataclass(frozen=True)
class ServeConfig:
    """Server settings.

    Attributes:
        model_name / reranker_name: the names clients use in ``model`` fields (default: the loaded paths).
        max_batch_tokens: token budget of one batched model call.
        max_wait_ms: how long the oldest request waits for others while the model is idle.
        max_queue_inputs: inputs allowed to wait; more gets 503 + Retry-After.
        max_client_batch_size: inputs per request (texts, documents or queries); more gets 413.
        max_input_tokens: tokens per input (default: the model's max length); longer inputs get 413 unless
            the request (or ``truncate``) asks to truncate.
        truncate: the default when a request does not say.
        max_body_bytes: larger request bodies get 413.
        api_key: when set, every route except ``GET /`` and ``GET /health`` needs ``Authorization: Bearer KEY``.
        max_top_k: the largest ``top_k`` / ``candidates`` a search may ask for.
        retry_after_s: the Retry-After of a 503.
    """

    model_name: str | None = None
    reranker_name: str | None = None
    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue_inputs: int = 4096
    max_client_batch_size: int = 32
    max_input_tokens: int | None = None
    truncate: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    api_key: str | None = None
    max_top_k: int = 1000
    retry_after_s: int = 1


def _names(*names: str | None) -> set[str]:
    out = set()
    for n in names:
        if n:
            out |= {n, os.path.basename(n.rstrip("/\\"))}
    return out


def _count(tok: Any, items: list[str]) -> list[int]:
    """Token counts (special tokens included); the Rust tokenizer's offset-free path when there is one."""
    backend = getattr(tok, "_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast") and backend.truncation is None:
        return [len(e.ids) for e in backend.encode_batch_fast(items, add_special_tokens=True)]
    return [len(ids) for ids in tok(items, add_special_tokens=True)["input_ids"]]


def _counting_copy(tokenizer: Any) -> Any:
    """A private copy of a tokenizer for counting tokens (no warning about long inputs: limits handle them)."""
    tok = copy.deepcopy(tokenizer)
    tok.model_max_length = int(1e12)
    return tok


class Engine:
    """The server's models and limits. Any of them may be absent; routes that need one answer 400 without it."""

    def __init__(self, embedder: Any = None, reranker: Any = None, searcher: Any = None, config: ServeConfig | None = None):
        self.config = config or ServeConfig()
        for name in ("max_client_batch_size", "max_body_bytes", "max_top_k", "retry_after_s"):
            value = getattr(self.config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServeConfig.{name} must be a positive integer, got {value!r}")
        if self.config.max_input_tokens is not None and self.config.max_input_tokens < 1:
            raise ValueError(f"ServeConfig.max_input_tokens must be positive, got {self.config.max_input_tokens!r}")
        self.embedder, self.reranker, self.searcher = embedder, reranker, searcher
        if embedder is None and searcher is not None:
            self.embedder = searcher.model
        if reranker is None and searcher is not None:
            self.reranker = searcher.reranker
        e, r = self.embedder, self.reranker
        self.model_name = self.config.model_name or (e.model_name_or_path if e is not None else None)
        self.reranker_name = self.config.reranker_name or (r.model_name_or_path if r is not None else None)
        self.model_names = _names(self.model_name, getattr(e, "model_name_or_path", None))
        self.reranker_names = _names(self.reranker_name, getattr(r, "model_name_or_path", None))
        self.tok = _counting_copy(e.tokenizer) if e is not None else None
        self.rtok = _counting_copy(r.tokenizer) if r is not None else None
        limit = self.config.max_input_tokens
        self.limit = limit or (e.passage_max_length if e is not None else None)
        self.rerank_limit = limit or (r.max_length if r is not None else None)

    # ---------------------------------------------------------------- checks on the event-loop thread
    def need(self, what: str) -> Any:
        obj = {"embedder": self.embedder, "reranker": self.reranker, "index": self.searcher}[what]
        if obj is None:
            flag = {"embedder": "--model", "reranker": "--reranker", "index": "--index-dir"}[what]
            raise ApiError(400, f"this server has no {what} loaded; start it with {flag}", None, "not_loaded")
        if what == "embedder" and self.tok is None:
            raise ApiError(400, "this server has no embedder loaded; start it with --model")
        return obj

    def check_model(self, name: Any, names: set[str], field: str = "model") -> None:
        if name is not None and name not in names:
            raise ApiError(404, f"{field}: the model {name!r} is not served here; this server serves "
                                f"{', '.join(sorted(names)) or 'no such model'}", field, "model_not_found")

    def token_counts(self, items: Sequence[str], field: str, truncate: bool | None) -> list[int]:
        """Tokens per text (special tokens included); over the limit: truncated or a 413 naming the item."""
        return self._limit(_count(self.tok, list(items)), self.limit, field, truncate)

    def pair_counts(self, query: str, items: Sequence[str], field: str, truncate: bool | None) -> list[int]:
        enc = self.rtok([query] * len(items), list(items), add_special_tokens=True)["input_ids"]
        return self._limit([len(ids) for ids in enc], self.rerank_limit, field, truncate)

    def _limit(self, counts: list[int], limit: int, field: str, truncate: bool | None) -> list[int]:
        truncate = self.config.truncate if truncate is None else truncate
        for i, n in enumerate(counts):
            if n > limit:
                if not truncate:
                    raise ApiError(413, f"{field}[{i}] has {n} tokens; the limit is {limit}. Shorten it, or send "
                                        "\"truncate\": true to cut it to the limit", f"{field}[{i}]", "input_too_long")
                counts[i] = limit
        return counts

    # ---------------------------------------------------------------- the model thread
    def run(self, key: Hashable, items: list) -> list:
        """Run one batched model call: ``key[0]`` names the operation, the rest its settings."""
        ops = {"embed": self._embed, "sparse": self._sparse, "rerank": self._rerank, "search": self._search}
        return ops[key[0]](key, items)

    def _embed(self, key: tuple, texts: list[str]) -> list[np.ndarray]:
        _, role, normalize = key
        model = self.embedder
        encode = {"query": model.encode_queries, "passage": model.encode_corpus, "text": model.encode}[role]
        saved = model.normalize_embeddings
        model.normalize_embeddings = normalize  # only this thread uses the model
        try:
            out = encode(texts, max_length=self.limit, show_progress=False)
        finally:
            model.normalize_embeddings = saved
        return list(np.asarray(out, dtype=np.float32))

    def _sparse(self, key: tuple, texts: list[str]) -> list:
        return list(self.embedder.encode_multi(texts, role=key[1], outputs=("sparse",), max_length=self.limit,
                                               show_progress=False).sparse)

    def _rerank(self, key: tuple, pairs: list[tuple[str, str]]) -> list[float]:
        return list(self.reranker.score(pairs, max_length=self.rerank_limit, show_progress=False))

    def _search(self, key: tuple, queries: list[str]) -> list:
        return self.searcher.search(list(queries), **json.loads(key[1]))
