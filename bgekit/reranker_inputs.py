"""Reranker inputs: checking pairs, building token ids as FlagEmbedding 1.4.2 does, the one-token "Yes" logit.

Shared by :mod:`bgekit.reranker` (cross-encoders, LLM rerankers) and the layerwise / lightweight rerankers;
:mod:`bgekit.reranker` re-exports these names. See ../shared/golden/README.md, "Cross-encoders" and
"LLM rerankers".

Where we differ from the reference on purpose: when a query alone is longer than the pair budget (only
possible with ``query_max_length`` close to ``max_length``), the reference leaves the pair longer than
``max_length``; :func:`fit_pair` drops the passage and cuts the query so every input fits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from bgekit.errors import positive_int
from bgekit.prompts import apply_instruction

DEFAULT_LLM_PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to the query "
                      "by providing a prediction of either 'Yes' or 'No'.")
PAIR_SEP = "\n"


# ---------------------------------------------------------------- checking input

def check_pairs(sentence_pairs: Any) -> list[tuple[str, str]]:
    """Validate pairs: one ``[query, passage]`` or a list of them. Returns a list of (query, passage).

    Raises:
        TypeError: not a list/tuple, or a pair that is not two strings (naming its index).
    """
    if not isinstance(sentence_pairs, (list, tuple)):
        raise TypeError(f"sentence_pairs must be a [query, passage] pair or a list of pairs, got {type(sentence_pairs).__name__}")
    if len(sentence_pairs) == 2 and all(isinstance(s, str) for s in sentence_pairs):
        return [(sentence_pairs[0], sentence_pairs[1])]
    out = []
    for i, pair in enumerate(sentence_pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(s, str) for s in pair):
            raise TypeError(f"sentence_pairs[{i}] must be a pair of two strings [query, passage], got {pair!r:.80}")
        out.append((pair[0], pair[1]))
    return out


def check_normalize(normalize: Any) -> bool:
    if not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"normalize must be True (sigmoid to 0..1) or False (raw logits), got {normalize!r}")
    return bool(normalize)


def check_length(value: Any, name: str) -> int:
    return positive_int(value, name)


def sigmoid(scores: Sequence[float]) -> list[float]:
    """Logistic function in float64, as the reference applies it to float32 logits."""
    x = np.asarray(scores, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-x))).tolist()


def with_instructions(pairs: list[tuple[str, str]], query_instruction: str | None, query_format: str,
                      passage_instruction: str | None, passage_format: str) -> list[tuple[str, str]]:
    """Prefix queries and passages with their instructions (None leaves that side as it is)."""
    if query_instruction is None and passage_instruction is None:
        return pairs
    return [(q if query_instruction is None else apply_instruction(query_format, query_instruction, q),
             p if passage_instruction is None else apply_instruction(passage_format, passage_instruction, p))
            for q, p in pairs]


# ---------------------------------------------------------------- building token ids

def fit_pair(first: list[int], second: list[int], budget: int, side: str = "right") -> tuple[list[int], list[int]]:
    """Truncate ``second`` so ``len(first) + len(second) <= budget`` ("only_second", from ``side``).

    If even an empty ``second`` does not fit, ``second`` is dropped and ``first`` cut (see module notes).
    """
    overflow = len(first) + len(second) - budget
    if overflow <= 0:
        return first, second
    if len(second) > overflow:
        return first, (second[overflow:] if side == "left" else second[:-overflow])
    return first[:max(budget, 0)], []


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a (query, passage) pair, learned from a probe."""

    pre: list[int]
    mid: list[int]
    post: list[int]
    types: tuple[int, int, int, int, int] | None  # token type of pre, first, mid, second, post

    @classmethod
    def probe(cls, tokenizer) -> "PairTemplate":
        a, b = "hello", "world"
        full = tokenizer(a, b, return_token_type_ids=True)
        ids, tt = full["input_ids"], full.get("token_type_ids")
        ia = tokenizer(a, add_special_tokens=False)["input_ids"]
        ib = tokenizer(b, add_special_tokens=False)["input_ids"]
        for i in range(len(ids) - len(ia) + 1):
            j0 = i + len(ia)
            for j in range(j0, len(ids) - len(ib) + 1):
                if ids[i:j0] == ia and ids[j:j + len(ib)] == ib:
                    pre, mid, post = ids[:i], ids[j0:j], ids[j + len(ib):]
                    if len(pre) + len(mid) + len(post) != tokenizer.num_special_tokens_to_add(pair=True):
                        continue
                    use_types = tt is not None and "token_type_ids" in tokenizer.model_input_names
                    k = j + len(ib)
                    types = (tt[0], tt[i], tt[j0] if mid else tt[i], tt[j], tt[k] if post else tt[j]) if use_types else None
                    return cls(pre, mid, post, types)
        raise ValueError(f"cannot tell how {type(tokenizer).__name__} joins a pair of texts (probe gave {ids})")

    @property
    def n_special(self) -> int:
        return len(self.pre) + len(self.mid) + len(self.post)

    def join(self, first: list[int], second: list[int]) -> dict[str, list[int]]:
        ids = self.pre + first + self.mid + second + self.post
        out = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if self.types is not None:
            parts = (self.pre, first, self.mid, second, self.post)
            out["token_type_ids"] = [t for t, part in zip(self.types, parts) for _ in part]
        return out


def _split_tokenize(tokenizer, pairs: list[tuple[str, str]], max_length: int, query_max_length: int):
    """Queries and passages tokenized apart, without special tokens, each truncated to its own budget."""
    queries = tokenizer([q for q, _ in pairs], add_special_tokens=False, truncation=True, max_length=query_max_length)
    passages = tokenizer([p for _, p in pairs], add_special_tokens=False, truncation=True, max_length=max_length)
    return queries["input_ids"], passages["input_ids"]


def cross_encoder_features(tokenizer, pairs: list[tuple[str, str]], max_length: int, query_max_length: int,
                           template: PairTemplate | None = None) -> list[dict]:
    """Cross-encoder inputs: query cut to ``query_max_length``, then the pair cut "only_second" to ``max_length``
    with special tokens counted (the reference's ``prepare_for_model`` layout)."""
    template = template or PairTemplate.probe(tokenizer)
    q_ids, p_ids = _split_tokenize(tokenizer, pairs, max_length, query_max_length)
    budget = max_length - template.n_special
    side = getattr(tokenizer, "truncation_side", "right")
    return [template.join(*fit_pair(q, p, budget, side)) for q, p in zip(q_ids, p_ids)]


def llm_features(tokenizer, pairs: list[tuple[str, str]], max_length: int, query_max_length: int,
                 prompt: str | None = None, always_bos: bool = False) -> list[dict]:
    """Decoder-reranker inputs: ``[bos] + query + sep + passage`` cut "only_second", then ``+ sep + prompt``.

    ``bos`` is added when the tokenizer has one that differs from its pad token (or always, for the
    layerwise model). Each dict holds ``input_ids``, ``attention_mask`` and, for the lightweight model,
    ``query_length`` (bos + query + sep) and ``prompt_length`` (sep + prompt).
    """
    prompt_ids = tokenizer(DEFAULT_LLM_PROMPT if prompt is None else prompt, add_special_tokens=False)["input_ids"]
    sep = tokenizer(PAIR_SEP, add_special_tokens=False)["input_ids"]
    bos_id = tokenizer.bos_token_id
    bos = [bos_id] if bos_id is not None and (always_bos or bos_id != tokenizer.pad_token_id) else []
    q_ids, p_ids = _split_tokenize(tokenizer, pairs, max_length, query_max_length)
    budget = max_length + len(sep) + len(prompt_ids)
    side = getattr(tokenizer, "truncation_side", "right")
    out = []
    for q, p in zip(q_ids, p_ids):
        first, second = fit_pair(bos + q, sep + p, budget, side)
        ids = first + second + sep + prompt_ids
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                    "query_length": len(first) + len(sep), "prompt_length": len(sep) + len(prompt_ids)})
    return out


def pad_features(tokenizer, features: list[dict], pad_to_multiple_of: int | None = None):
    """Pad a batch of feature dicts (token keys only) on the tokenizer's padding side into tensors."""
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features[0]]
    cols = {k: [f[k] for f in features] for k in keys}
    return tokenizer.pad(cols, padding=True, return_tensors="pt", pad_to_multiple_of=pad_to_multiple_of)


def last_positions(attention_mask):
    """Index of each row's last real token, for left or right padding. (B, T) -> (B,)."""
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # (T,)
    return (attention_mask.long() * positions).max(dim=1).values


# ---------------------------------------------------------------- the one-token "Yes" logit

# Config fields that change logits after the output embedding: name -> (logit, value) -> logit.
LOGIT_TRANSFORMS: dict[str, Callable] = {
    "final_logit_softcapping": lambda x, c: x if not c else (x / c).tanh() * c,  # Gemma2 / Gemma3
    "logit_scale": lambda x, s: x * s,  # Cohere
    "logits_scaling": lambda x, s: x / s,  # Granite
}


@dataclass(frozen=True)
class TokenLogitHead:
    """The logit of one token from final hidden states, without the full vocabulary (picklable).

    ``head(hidden, output_embeddings)`` maps (B, H) to (B,) in fp32: one row of the output embedding, then
    the LOGIT_TRANSFORMS the model's config asks for (e.g. Gemma2's final logit soft-capping).
    """

    token_id: int
    transforms: tuple[tuple[str, float], ...] = ()

    @classmethod
    def for_model(cls, model, token_id: int) -> "TokenLogitHead":
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        return cls(token_id, tuple((k, float(getattr(config, k))) for k in LOGIT_TRANSFORMS if getattr(config, k, None)))

    def __call__(self, hidden, output_embeddings):
        logit = hidden.float() @ output_embeddings.weight[self.token_id].float()  # (B, H) @ (H,) -> (B,)
        if getattr(output_embeddings, "bias", None) is not None:
            logit = logit + output_embeddings.bias[self.token_id].float()
        for name, value in self.transforms:
            logit = LOGIT_TRANSFORMS[name](logit, value)
        return logit
