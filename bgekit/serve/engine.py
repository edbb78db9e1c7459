"""What the server runs: the loaded models, input limits, health, and the one function model workers call.

Every model call of the server goes through :meth:`Engine.run` on one of the batcher's model threads. Each
thread gets its own shallow copy of the embedder / reranker with a private tokenizer (a fast tokenizer must not
be shared across threads); the torch weights are shared. Index searches take a lock, so one runs at a time.
Token counting for limits uses private copies of the tokenizers on the event-loop thread.
"""
from __future__ import annotations

import copy
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from bgekit.errors import positive_int
from bgekit.serve.schemas import ApiError

ROLES = {None: "text", "text": "text", "query": "query", "passage": "passage", "document": "passage"}
PROBE = "bgekit health probe: the giant panda eats bamboo."


@dataclass(frozen=True)
class ServeConfig:
    """Server settings.

    Attributes:
        model_name / reranker_name: the name the server reports for its models (default: the loaded paths).
        served_model_names: more names clients may send in ``model`` (aliases); the model's own name, path and
            hub name (``org/name`` with the same last part) are always accepted.
        accept_any_model: accept any ``model`` value, as text-embeddings-inference does.
        max_batch_tokens: token budget of one batched model call; larger requests are split into such calls.
        max_wait_ms: how long the oldest request waits for others while a model worker is idle.
        max_queue_inputs: inputs allowed to wait; more gets 503 + Retry-After.
        max_client_batch_size: inputs per request (texts, documents or queries); OpenAI accepts 2,048.
        max_input_tokens: tokens per input (default: the model's max length).
        truncate: TEI routes' default for ``truncate`` (TEI's ``--auto-truncate``); off: longer inputs get 413.
        strict_length: OpenAI and Cohere routes refuse inputs longer than the limit (400) instead of truncating
            them from the right, which is their default (the clients have no standard way to ask).
        max_body_bytes: larger request bodies get 413.
        body_timeout_s: a request body that has not arrived in full after this long gets 408 and is dropped.
        api_key: when set, every route except ``GET /`` and ``GET /health`` needs ``Authorization: Bearer KEY``.
        max_top_k: the largest ``top_k`` / ``candidates`` a search may ask for.
        retry_after_s: the Retry-After of a 503.
        workers: model worker threads (default 1); ``bgekit serve`` uses one single-threaded worker per core.
    """

    model_name: str | None = None
    reranker_name: str | None = None
    served_model_names: tuple[str, ...] = ()
    accept_any_model: bool = False
    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue_inputs: int = 16384
    max_client_batch_size: int = 2048
    max_input_tokens: int | None = None
    truncate: bool = False
    strict_length: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    body_timeout_s: float = 30.0
    api_key: str | None = None
    max_top_k: int = 1000
    retry_after_s: int = 1
    workers: int = 1


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


def _replica(model: Any) -> Any:
    """A shallow copy sharing the weights, with its own tokenizer, for one model thread."""
    if model is None:
        return None
    twin = copy.copy(model)
    twin.tokenizer = copy.deepcopy(model.tokenizer)
    return twin


def _check_config(cfg: ServeConfig) -> None:
    for name in ("max_client_batch_size", "max_body_bytes", "max_top_k", "retry_after_s", "workers"):
        positive_int(getattr(cfg, name), f"ServeConfig.{name}")
    positive_int(cfg.max_input_tokens, "ServeConfig.max_input_tokens", allow_none=True)
    names = cfg.served_model_names
    if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"ServeConfig.served_model_names must be a tuple of non-empty names, got {names!r}")
    if not cfg.body_timeout_s > 0:
        raise ValueError(f"ServeConfig.body_timeout_s must be positive, got {cfg.body_timeout_s!r}")


class Engine:
    """The server's models, names, limits and health. Any model may be absent; routes needing one say so."""

    def __init__(self, embedder: Any = None, reranker: Any = None, searcher: Any = None, config: ServeConfig | None = None):
        self.config = cfg = config or ServeConfig()
        _check_config(cfg)
        self.embedder, self.reranker, self.searcher = embedder, reranker, searcher
        if embedder is None and searcher is not None:
            self.embedder = searcher.model
        if reranker is None and searcher is not None:
            self.reranker = searcher.reranker
        e, r = self.embedder, self.reranker
        self.model_name = cfg.model_name or (e.model_name_or_path if e is not None else None)
        self.reranker_name = cfg.reranker_name or (r.model_name_or_path if r is not None else None)
        aliases = tuple(cfg.served_model_names)
        self.model_names = set() if e is None else _names(self.model_name, getattr(e, "model_name_or_path", None), *aliases)
        self.reranker_names = set() if r is None else _names(self.reranker_name, getattr(r, "model_name_or_path", None),
                                                             *aliases)
        self.tok = _counting_copy(e.tokenizer) if e is not None else None
        self.rtok = _counting_copy(r.tokenizer) if r is not None else None
        self.limit = cfg.max_input_tokens or (e.passage_max_length if e is not None else None)
        self.rerank_limit = cfg.max_input_tokens or (r.max_length if r is not None else None)
        self.problems: dict[str, str] = {}
        self._local = threading.local()
        self._search_lock = threading.Lock()

    # ---------------------------------------------------------------- checks on the event-loop thread
    def need(self, what: str) -> Any:
        obj = {"embedder": self.embedder, "reranker": self.reranker, "index": self.searcher}[what]
        if obj is None:
            flag = {"embedder": "--model", "reranker": "--reranker", "index": "--index-dir"}[what]
            raise ApiError(400, f"this server has no {what} loaded; start it with {flag}", None, "not_loaded")
        return obj

    def served_names(self) -> list[str]:
        """The names listed by ``GET /v1/models``: the configured names and aliases, embedder first."""
        out = [n for n in (self.model_name, self.reranker_name, *self.config.served_model_names) if n]
        return list(dict.fromkeys(out))

    def accepts(self, name: str, names: set[str]) -> bool:
        if self.config.accept_any_model or name in names:
            return True
        last = name.rstrip("/").rsplit("/", 1)[-1].lower()  # a hub name "org/name" of a served model
        return "/" in name and any(n.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower() == last for n in names)

    def check_model(self, name: Any, names: set[str], field: str = "model") -> None:
        if name is not None and not self.accepts(name, names):
            raise ApiError(404, f"{field}: the model {name!r} is not served here; this server serves "
                                f"{', '.join(sorted(names)) or 'no such model'} (start it with --served-model-name "
                                "to add a name, or --accept-any-model)", field, "model_not_found")

    def token_counts(self, items: Sequence, field: str, truncate: bool, status: int = 413,
                     limit: int | None = None) -> list[int]:
        """Tokens per input (special tokens included); over the limit: cut to it, or an error naming the item."""
        counts = [len(x) for x in items] if items and isinstance(items[0], list) else _count(self.tok, list(items))
        return self._limit(counts, limit or self.limit, field, truncate, status)

    def pair_counts(self, query: str, items: Sequence[str], field: str, truncate: bool, status: int = 413) -> list[int]:
        enc = self.rtok([query] * len(items), list(items), add_special_tokens=True)["input_ids"]
        return self._limit([len(ids) for ids in enc], self.rerank_limit, field, truncate, status)

    def _limit(self, counts: list[int], limit: int, field: str, truncate: bool, status: int) -> list[int]:
        for i, n in enumerate(counts):
            if n > limit:
                if not truncate:
                    raise ApiError(status, f"{field}[{i}] has {n} tokens; the limit is {limit}. Shorten it, or "
                                           "send \"truncate\": true to cut it to the limit", f"{field}[{i}]",
                                   "input_too_long")
                counts[i] = limit
        return counts

    # ---------------------------------------------------------------- health
    def probe(self) -> dict[str, str]:
        """Run each model once on a tiny input (at startup); record what fails in :attr:`problems`."""
        checks = {"embedder": lambda: self.embedder.encode([PROBE], show_progress=False),
                  "reranker": lambda: self.reranker.score([(PROBE, PROBE)], show_progress=False)}
        for what, check in checks.items():
            if getattr(self, what) is not None:
                try:
                    check()
                    self.problems.pop(what, None)
                except Exception as e:  # noqa: BLE001 - reported by /health and the CLI
                    self.problems[what] = f"the {what} cannot run: {type(e).__name__}: {e}"
        self.check_index()
        return dict(self.problems)

    def check_index(self) -> None:
        """Reload the index if it changed and check it still matches the model (a rebuild may change it)."""
        if self.searcher is None:
            return
        from bgekit.index.model_info import IndexModelMismatch

        with self._search_lock:
            try:
                if self.searcher.store.reload() or self.searcher._checked != self.searcher.store.generation:
                    self.searcher._check_model()
                self.problems.pop("index", None)
            except (IndexModelMismatch, OSError, ValueError) as e:
                self.problems["index"] = f"the index cannot be searched with this model: {e}"

    def health(self) -> dict:
        self.check_index()
        store = self.searcher.store if self.searcher is not None else None
        return {"status": "unhealthy" if self.problems else "ok", "problems": sorted(self.problems.values()),
                "model": self.model_name, "reranker": self.reranker_name,
                "index": None if store is None else {"path": store.path, "generation": store.generation,
                                                     "count": store.count, "outputs": list(store.outputs),
                                                     "rerank": self.searcher.reranker is not None}}

    # ---------------------------------------------------------------- the model threads
    def run(self, key: Hashable, items: list) -> list:
        """Run one batched model call: ``key[0]`` names the operation, the rest its settings."""
        ops = {"embed": self._embed, "sparse": self._sparse, "embed_all": self._embed_all, "rerank": self._rerank,
               "search": self._search}
        what = "reranker" if key[0] == "rerank" else "embedder"
        try:
            out = ops[key[0]](key, items)
        except (ValueError, TypeError):  # about the request, not the model's health
            raise
        except Exception as e:
            if key[0] != "search":
                self.problems[what] = f"the {what} failed: {type(e).__name__}: {e}"
            raise
        if key[0] != "search":
            self.problems.pop(what, None)
        return out

    def _mine(self, name: str) -> Any:
        """This thread's replica of the embedder or reranker."""
        twin = getattr(self._local, name, None)
        if twin is None:
            twin = _replica(getattr(self, name))
            setattr(self._local, name, twin)
        return twin

    def _side(self, model: Any, direction: str):
        model.tokenizer.truncation_side = direction.lower()
        return model

    def _embed(self, key: tuple, items: list) -> list[np.ndarray]:
        _, role, normalize, direction, ids, limit = key
        model = self._side(self._mine("embedder"), direction)
        model.normalize_embeddings = normalize  # a replica: only this thread uses it
        if ids:
            return list(_encode_ids(model, items, limit, direction))
        encode = {"query": model.encode_queries, "passage": model.encode_corpus, "text": model.encode}[role]
        return list(np.asarray(encode(items, max_length=limit, show_progress=False), dtype=np.float32))

    def _sparse(self, key: tuple, texts: list[str]) -> list:
        model = self._side(self._mine("embedder"), key[2])
        return list(model.encode_multi(texts, role=key[1], outputs=("sparse",), max_length=self.limit,
                                       show_progress=False).sparse)

    def _embed_all(self, key: tuple, texts: list[str]) -> list[np.ndarray]:
        model = self._side(self._mine("embedder"), key[2])
        return _token_states(model, texts, self.limit)

    def _rerank(self, key: tuple, pairs: list[tuple[str, str]]) -> list[float]:
        model = self._side(self._mine("reranker"), key[1])
        return list(model.score(pairs, max_length=self.rerank_limit, show_progress=False))

    def _search(self, key: tuple, queries: list[str]) -> list:
        with self._search_lock:
            return self.searcher.search(list(queries), **json.loads(key[1]))


def _encode_ids(model: Any, ids_list: list[list[int]], limit: int, direction: str) -> np.ndarray:
    """Embed inputs given as token ids (used as they are, as TEI does: no instruction, no special tokens added)."""
    import torch

    if not all(hasattr(model, a) for a in ("_pad", "_pool", "_finish")):
        raise ValueError(f"token-id inputs are not supported for {type(model).__name__}; send text")
    cut = [ids[-limit:] if direction.lower() == "left" else ids[:limit] for ids in ids_list]
    device = model.target_devices[0]
    out = []
    with torch.inference_mode():
        for start in range(0, len(cut), model.batch_size):
            batch = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in cut[start:start + model.batch_size]]
            inputs = model._pad(batch).to(device)
            hidden = model.model(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
            out.append(model._finish(model._pool(hidden, inputs["attention_mask"])).cpu().numpy())  # (B, D)
    return np.concatenate(out).astype(np.float32)


def _token_states(model: Any, texts: list[str], limit: int) -> list[np.ndarray]:
    """TEI's /embed_all: the last hidden state of every token (special tokens included), one (T, H) per text."""
    import torch

    device = model.target_devices[0]
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), model.batch_size):
            chunk = texts[start:start + model.batch_size]
            inputs = model.tokenizer(chunk, truncation=True, max_length=limit, padding=True, return_tensors="pt").to(device)
            hidden = model.model(**inputs, return_dict=True).last_hidden_state.float()  # (B, T, H)
            lengths = inputs["attention_mask"].sum(1).tolist()
            out += [hidden[i, :n].cpu().numpy() for i, n in enumerate(lengths)]
    return out
