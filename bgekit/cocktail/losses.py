"""Merging weights from a few examples of the target task: each candidate model's loss on the examples, then
``softmax(-loss / temperature)`` in float32, as LM-Cocktail computes them.

- Embedders ("encoder"): queries in batches of ``batch_size``; each query brings its first positive and
  ``neg_number`` negatives drawn with Python's global ``random`` (as the reference does); embeddings pooled as
  the first model pools (the reference always takes CLS; BGE models pool CLS), L2-normalised, scores ``q @ p.T / 0.05`` against every passage of the batch, cross-entropy with target
  ``i * (1 + neg_number)``; the loss is the mean of the batch means.
- LLMs ("decoder"): ``input + ' ' + output`` with the tokenizer's special tokens and one more EOS; the prompt's
  tokens (``encode(input)``, special tokens included) are masked out of the labels; the HF causal-LM loss per
  batch, averaged over batches. Rows are padded to the longest row of their batch, not to ``max_input_length``
  (the loss is the same: padding is masked out and rows are right-padded).
"""
from __future__ import annotations

import random
from typing import Any, Callable

from bgekit.errors import InputError


def check_examples(example_data: Any, model_type: str, neg_number: int,
                   where: Callable[[int], str] = lambda i: f"example_data[{i}]") -> list[dict]:
    """Validate the examples before any model loads; errors name the item (``where(i)``) and the field.

    Raises:
        InputError: no examples, an item that is not an object, a missing or mistyped field, or (encoder) fewer
            negatives than ``neg_number``.
    """
    if not isinstance(example_data, (list, tuple)) or not example_data:
        raise InputError(f"example_data must be a non-empty list of examples, got {_describe(example_data)}")
    fields = {"encoder": (("query", str), ("pos", list), ("neg", list)), "decoder": (("input", str), ("output", str))}[model_type]
    for i, item in enumerate(example_data):
        if not isinstance(item, dict):
            raise InputError(f"{where(i)}: expected an object with {', '.join(f for f, _ in fields)}, got {_describe(item)}")
        for name, kind in fields:
            if not isinstance(item.get(name), kind):
                raise InputError(f"{where(i)}: field {name!r} must be a {'list of texts' if kind is list else 'text'}, "
                                 f"got {_describe(item.get(name))}")
        if model_type == "encoder":
            if not item["pos"] or not all(isinstance(t, str) for t in item["pos"] + item["neg"]):
                raise InputError(f"{where(i)}: 'pos' needs at least one text and 'pos' / 'neg' must hold texts only")
            if len(item["neg"]) < neg_number:
                raise InputError(f"{where(i)}: {len(item['neg'])} negatives, but neg_number={neg_number} are sampled "
                                 "per query (LM-Cocktail's random.sample fails here); lower neg_number or add negatives")
    return list(example_data)


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]


def embedder_batches(tokenizer, examples: list[dict], batch_size: int, max_length: int, neg_number: int) -> list:
    """[(query features, passage features)] per batch of ``batch_size`` queries (the last one may be smaller)."""
    batches, queries, passages = [], [], []
    for i, item in enumerate(examples):
        queries.append(item["query"])
        passages.append(item["pos"][0])
        passages.extend(random.sample(item["neg"], neg_number))
        if len(queries) == batch_size or i == len(examples) - 1:
            batches.append(tuple(tokenizer(t, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                                 for t in (queries, passages)))
            queries, passages = [], []
    return batches


def embedder_loss(model, batches: list, pooling: str = "cls") -> float:
    """Mean over batches of the in-batch contrastive loss of L2-normalised embeddings (temperature 0.05).

    ``pooling``: how the model pools ("cls" as in the reference; a mean-pooling model such as all-MiniLM-L6-v2
    is scored with the embeddings it produces)."""
    import torch

    from bgekit.pooling import get_pooling

    pool = get_pooling(pooling)

    def embed(inputs):
        hidden = model(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
        return torch.nn.functional.normalize(pool(hidden, inputs["attention_mask"]), dim=-1)  # (B, H)

    total = torch.zeros(())
    with torch.no_grad():
        for q_inputs, p_inputs in batches:
            q, p = embed(q_inputs), embed(p_inputs)  # (Q, H), (P, H)
            scores = q @ p.T / 0.05  # (Q, P)
            target = torch.arange(q.shape[0]) * (p.shape[0] // q.shape[0])
            total = total + torch.nn.functional.cross_entropy(scores, target)
    return float(total / len(batches))


def llm_rows(tokenizer, examples: list[dict], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example, unpadded, truncated to ``max_length`` (the reference's layout)."""
    if tokenizer.pad_token_id is None:
        raise InputError("the first model's tokenizer has no pad token; LM-Cocktail's decoder loss needs one")
    rows = []
    for item in examples:
        ids = tokenizer.encode(item["input"] + " " + item["output"]) + [tokenizer.eos_token_id]
        prompt = tokenizer.encode(item["input"])
        labels = [-100] * len(prompt) + ids[len(prompt):]
        rows.append((ids[:max_length], labels[:max_length]))
    return rows


def llm_batches(tokenizer, rows: list[tuple[list[int], list[int]]], batch_size: int) -> list[dict]:
    """Right-padded batches; the attention mask is ``input_ids != pad_token_id`` as in the reference."""
    import torch

    pad = tokenizer.pad_token_id
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in chunk], dtype=torch.long)  # (B, T)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chunk], dtype=torch.long)  # (B, T)
        batches.append({"input_ids": ids, "labels": labels, "attention_mask": ids.ne(pad).long()})
    return batches


def llm_loss(model, batches: list[dict]) -> float:
    """Mean over batches of the causal-LM loss (token mean within a batch)."""
    import torch

    total = torch.zeros(())
    with torch.no_grad():
        for batch in batches:
            total = total + model(**batch).loss.float()
    return float(total / len(batches))


def softmax_weights(losses: list[float], temperature: float) -> list[float]:
    """``softmax(-loss / temperature)`` in float32, as Python floats."""
    import torch

    return torch.softmax(-torch.tensor(losses, dtype=torch.float32) / temperature, -1).tolist()
