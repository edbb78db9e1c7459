"""Model code that transformers does not ship: the early-exit decoder rerankers.

- :mod:`bgekit.models.minicpm_layerwise`: bge-reranker-v2-minicpm-layerwise (``model_type: minicpm`` with one
  score head per exit layer).
- :mod:`bgekit.models.gemma2_lightweight`: bge-reranker-v2.5-gemma2-lightweight (``model_type: cost_wise_gemma``:
  Gemma2 with per-layer heads and passage-token compression).

Both load the published checkpoints' weight names from ``model.safetensors`` (single or sharded) or
``pytorch_model.bin``, and share one contract: ``model(input_ids, attention_mask, layers, heads, ...)`` returns the
score of the last real token for every requested exit layer, shape ``(len(layers), B)`` in float32.

This module holds what both need: config and weight loading, the additive attention mask, last-token indexing.
"""
from __future__ import annotations

import importlib
import json
import os
from typing import Any

# model_type in config.json -> "module:Class"
MODEL_TYPES = {
    "minicpm": "bgekit.models.minicpm_layerwise:LayerwiseMiniCPM",
    "cost_wise_gemma": "bgekit.models.gemma2_lightweight:LightweightGemma2",
}

# Buffers some old checkpoints saved that are recomputed here.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def read_config(folder: str) -> dict:
    """The checkpoint's config.json as a dict."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder!r} has no config.json; is it the folder holding the weights?") from None


def model_class(model_type: str):
    """The class for a config's ``model_type``; ValueError listing the known ones."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"no early-exit reranker model for model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    module, name = MODEL_TYPES[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def _weight_files(folder: str) -> tuple[list[str], str]:
    """The weight files of a checkpoint folder and their format ("safetensors" or "bin")."""
    for fmt, single, index in (("safetensors", "model.safetensors", "model.safetensors.index.json"),
                               ("bin", "pytorch_model.bin", "pytorch_model.bin.index.json")):
        if os.path.isfile(os.path.join(folder, single)):
            return [os.path.join(folder, single)], fmt
        if os.path.isfile(os.path.join(folder, index)):
            with open(os.path.join(folder, index), encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [os.path.join(folder, s) for s in shards], fmt
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin (or sharded index) in {folder!r}")


def load_state_dict(folder: str, dtype: Any) -> dict:
    """All weights of a checkpoint folder, floating tensors cast to ``dtype``."""
    import torch

    files, fmt = _weight_files(folder)
    state: dict = {}
    for path in files:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            part = load_file(path)
        else:
            part = torch.load(path, map_location="cpu", weights_only=True)
        for key, value in part.items():
            if key.endswith(_IGNORED_SUFFIXES):
                continue
            state[key] = value.to(dtype) if value.is_floating_point() else value
    return state


def load_pretrained(folder: str, dtype: Any, expected_type: str | None = None, **options: Any):
    """Build the model for ``folder``'s config and load its weights (strict: any missing or extra name fails).

    The model is built on the meta device, so no memory or time goes into random initialisation; buffers that
    are not saved (rotary frequencies) are made afterwards by the model's ``init_buffers()``.

    Args:
        folder: checkpoint folder with config.json and weights.
        dtype: torch dtype of the weights.
        expected_type: raise ValueError if the config's model_type differs (e.g. a Gemma2 checkpoint given to
            the MiniCPM layerwise class).
        options: passed to the model's constructor.
    """
    import torch

    config = read_config(folder)
    model_type = config.get("model_type")
    if expected_type is not None and model_type != expected_type:
        raise ValueError(f"{folder!r} holds a {model_type!r} model; this class needs model_type {expected_type!r}")
    cls = model_class(model_type)
    with torch.device("meta"):
        model = cls(config, **options)
    state = load_state_dict(folder, dtype)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"weights in {folder!r} do not fit {cls.__name__}: missing {sorted(missing)[:10]}, "
                         f"unexpected {sorted(unexpected)[:10]}")
    model.init_buffers()
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{cls.__name__} left tensors uninitialised after loading {folder!r}: {left[:10]}")
    return model.eval()


def additive_mask(attention_mask: Any, dtype: Any, sliding_window: int | None = None):
    """Causal + padding mask to add to attention scores: 0 where allowed, the dtype's minimum elsewhere.

    A query attends to keys at or before it that are not padding, and (with ``sliding_window``) fewer than
    ``sliding_window`` positions back; a query that could attend to nothing attends to everything.
    (B, T) -> (B, 1, T, T).
    """
    import torch

    t = attention_mask.shape[1]
    pos = torch.arange(t, device=attention_mask.device)
    allowed = pos[None, :] <= pos[:, None]  # (T, T) key <= query
    if sliding_window is not None:
        allowed = allowed & (pos[None, :] > pos[:, None] - sliding_window)
    allowed = allowed[None] & attention_mask.bool()[:, None, :]  # (B, T, T)
    # a padding query with nothing to attend to (left padding) may attend anywhere: its output is never used,
    # and an all-masked row would give NaN that 0-weights cannot cancel in fp16
    allowed = allowed | ~allowed.any(-1, keepdim=True)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]  # (B, 1, T, T)


def last_token_index(attention_mask: Any):
    """Index of each row's last real token, for left or right padding. (B, T) -> (B,)."""
    t = attention_mask.shape[1]
    return t - 1 - attention_mask.flip(1).argmax(1)
