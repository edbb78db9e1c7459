"""Early-exit LLM rerankers: the MiniCPM layerwise and the Gemma2 lightweight models.

Both score a (query, passage) pair with a small head on the hidden state after L decoder layers, so a smaller L
is faster. The native :class:`EarlyExitReranker` takes any exit layers, in any order, and always applies the head
trained for each layer. FlagEmbedding's ``LayerWiseFlagLLMReranker`` and
``LightWeightFlagLLMReranker`` (its signatures and head quirks) are in :mod:`bgekit.compat.layerwise`.

Inputs are built exactly like the "Yes"-logit LLM reranker's (:func:`bgekit.reranker_inputs.llm_features`), except that
``<bos>`` is always prepended; the lightweight model pads on the right (its token compression needs it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bgekit import backends
from bgekit.batching import check_batch_size, map_devices, run_sorted
from bgekit.reranker_inputs import (DEFAULT_LLM_PROMPT, check_length, check_normalize, check_pairs, llm_features,
                                    pad_features, sigmoid, with_instructions)

LIGHTWEIGHT_PROMPT = "Predict whether passage B contains an answer to query A."


@dataclass(frozen=True)
class _Kind:
    name: str
    prompt: str
    padding_side: str | None  # None: the tokenizer's own
    compresses: bool


KINDS = {
    "minicpm": _Kind("layerwise", DEFAULT_LLM_PROMPT, None, False),
    "cost_wise_gemma": _Kind("lightweight", LIGHTWEIGHT_PROMPT, "right", True),
}


def check_layers(value: Any, name: str = "cutoff_layers") -> list[int]:
    """An int or a non-empty list of ints -> list of ints; anything else raises ValueError."""
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{name} must be an int or a non-empty list of ints, got {value!r}")
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}[{i}] must be an int (a layer number), got {v!r}")
    return [int(v) for v in items]


def check_compression(ratio: Any, layers: Any) -> tuple[int, list[int]]:
    """``compress_ratio`` must be a positive int; ``compress_layers`` an int or a list of non-negative ints."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise ValueError(f"compress_ratio must be a positive integer (1 = no compression), got {ratio!r}")
    if isinstance(layers, (list, tuple)) and not layers:
        return int(ratio), []
    layers = check_layers(layers, "compress_layers")
    if any(v < 0 for v in layers):
        raise ValueError(f"compress_layers must be non-negative layer indices, got {layers!r}")
    return int(ratio), layers


class EarlyExitReranker:
    """Score (query, passage) pairs at chosen exit layers of a layerwise or lightweight LLM reranker.

    Args:
        model_name_or_path: folder or hub name of a ``minicpm`` layerwise or ``cost_wise_gemma`` checkpoint.
        devices: "cpu", "cuda:0", a list (one worker process each) or None for all GPUs / CPU.
        dtype: "fp32", "fp16" or "bf16"; or use_fp16 / use_bf16 (fp16 on CPU runs fp32).
        query_instruction / passage_instruction: prefixes, "A: " and "B: " as trained; None for none.
        query_instruction_format / passage_instruction_format: templates with two ``{}``.
        prompt: the task prompt after the pair; None uses the model's default.
        layers: default exit layers (None: the deepest layer with a head).
        compress_ratio / compress_layers: lightweight token compression defaults (1 / none: off).
        batch_size, query_max_length (None: 3/4 of max_length), max_length, normalize: scoring defaults.
        attn_softcapping: apply Gemma2 attention softcapping (lightweight; the reference does not).
        trust_remote_code, cache_dir: for the tokenizer and the hub download.

    Example:
        >>> rr = EarlyExitReranker("BAAI/bge-reranker-v2-minicpm-layerwise")           # doctest: +SKIP
        >>> rr.score_layers([["what is panda?", "The giant panda is a bear."]], layers=[28, 40])  # doctest: +SKIP
        {28: [3.1], 40: [4.2]}
    """

    MODEL_TYPE: str | None = None  # set by the compat subclasses: the one model type they accept

    def __init__(self, model_name_or_path: str, *, devices: Any = None, dtype: str | None = None,
                 use_fp16: bool = False, use_bf16: bool = False, query_instruction: str | None = "A: ",
                 query_instruction_format: str = "{}{}", passage_instruction: str | None = "B: ",
                 passage_instruction_format: str = "{}{}", prompt: str | None = None, layers: Any = None,
                 compress_ratio: int = 1, compress_layers: Any = (), batch_size: int = 128,
                 query_max_length: int | None = None, max_length: int = 512, normalize: bool = False,
                 attn_softcapping: bool = False, trust_remote_code: bool = False, cache_dir: str | None = None):
        from transformers import PretrainedConfig

        from bgekit.models import load_pretrained, read_config

        self.model_name_or_path = model_name_or_path
        self.path = backends.locate(model_name_or_path, cache_dir)
        model_type = read_config(self.path).get("model_type")
        if model_type not in KINDS:
            raise ValueError(f"{model_name_or_path!r} is a {model_type!r} model, not an early-exit reranker "
                             f"(model types: {', '.join(KINDS)})")
        self.kind = KINDS[model_type]
        self.target_devices = backends.resolve_devices(devices)
        self.dtype = backends.resolve_dtype(self.target_devices[0], use_fp16, use_bf16, dtype)
        options = {"attn_softcapping": attn_softcapping} if self.kind.compresses else {}
        self.model = load_pretrained(self.path, self.dtype, self.MODEL_TYPE, **options)
        # an empty config: transformers does not know these model types and would warn about them
        self.tokenizer = backends.load_tokenizer(self.path, trust_remote_code=trust_remote_code,
                                                 config=PretrainedConfig())
        if self.kind.padding_side:
            self.tokenizer.padding_side = self.kind.padding_side
        self.query_instruction_for_rerank = query_instruction
        self.query_instruction_format = query_instruction_format
        self.passage_instruction_for_rerank = passage_instruction
        self.passage_instruction_format = passage_instruction_format
        self.prompt = prompt
        self.layers = None if layers is None else self._native_layers(layers)
        self.compress_ratio, self.compress_layers = check_compression(compress_ratio, compress_layers)
        self.batch_size = check_batch_size(batch_size)
        self.query_max_length = None if query_max_length is None else check_length(query_max_length, "query_max_length")
        self.max_length = check_length(max_length, "max_length")
        self.normalize = check_normalize(normalize)
        self._device = "cpu"

    # ------------------------------------------------------------------ native API
    def score_layers(self, sentence_pairs, layers: Any = None, *, batch_size: int | None = None,
                     max_length: int | None = None, query_max_length: int | None = None, prompt: str | None = None,
                     normalize: bool | None = None, compress_ratio: int | None = None, compress_layers: Any = None,
                     show_progress: bool | None = None) -> dict[int, list[float]]:
        """Scores at each exit layer, with the head trained for that layer: ``{layer: [score per pair]}``.

        Args:
            sentence_pairs: one [query, passage] pair or a list of pairs.
            layers: exit layers, any order (None: the constructor's, else the deepest). A layer without a
                trained head raises ValueError naming the valid ones.
            Others: override the constructor's defaults for this call.
        """
        layers = self._native_layers(self.layers if layers is None else layers)
        states = sorted(set(layers))
        rows = self._scores(sentence_pairs, states, [self.model.head_index(x) for x in states], batch_size,
                            max_length, query_max_length, prompt, normalize, compress_ratio, compress_layers,
                            show_progress)
        return {layer: rows[states.index(layer)] for layer in layers}

    def score(self, sentence_pairs, layer: int | None = None, **options: Any) -> list[float]:
        """Scores at one exit layer (None: the default); ``options`` as in :meth:`score_layers`."""
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, (int, np.integer))):
            raise ValueError(f"layer must be an int (one exit layer) or None, got {layer!r}")
        scores = self.score_layers(sentence_pairs, None if layer is None else [int(layer)], **options)
        return next(iter(scores.values()))

    def rank(self, query: str, passages: Sequence[str], layer: int | None = None, ids: Sequence[str] | None = None,
             top_k: int | None = None, **options: Any):
        """Passages sorted by descending score at ``layer``, as :class:`bgekit.types.Hit` (ranks from 1)."""
        from bgekit.reranker import rank_scores

        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        scores = self.score([[query, p] for p in passages], layer, **options) if len(passages) else []
        return rank_scores(scores, passages, ids, top_k)

    def _native_layers(self, layers: Any) -> list[int]:
        valid = self.model.valid_layers()
        layers = [valid[-1]] if layers is None else check_layers(layers, "layers")
        bad = [x for x in layers if x not in valid]
        if bad:
            raise ValueError(f"layers {bad} have no trained head; valid exit layers: {valid}")
        return layers

    # ------------------------------------------------------------------ the scoring loop
    def _scores(self, sentence_pairs, states: list[int], heads: list[int], batch_size, max_length, query_max_length,
                prompt, normalize, compress_ratio, compress_layers, show_progress,
                device: str | None = None) -> list[list[float]]:
        """``(len(states), N)`` scores as lists: state ``states[i]`` scored by head ``heads[i]``; on ``device``
        (None: the target devices)."""
        pairs = check_pairs(sentence_pairs)
        max_length = check_length(self.max_length if max_length is None else max_length, "max_length")
        qmax = query_max_length if query_max_length is not None else self.query_max_length or max_length * 3 // 4
        settings = dict(
            batch_size=check_batch_size(self.batch_size if batch_size is None else batch_size), max_length=max_length,
            query_max_length=check_length(qmax, "query_max_length"),
            prompt=self.prompt if prompt is None else prompt, states=states, heads=heads, show_progress=show_progress,
            compression=check_compression(self.compress_ratio if compress_ratio is None else compress_ratio,
                                          self.compress_layers if compress_layers is None else compress_layers))
        normalize = self.normalize if normalize is None else check_normalize(normalize)
        if not pairs:
            return [[] for _ in states]
        pairs = with_instructions(pairs, self.query_instruction_for_rerank, self.query_instruction_format,
                                  self.passage_instruction_for_rerank, self.passage_instruction_format)
        if device is None and len(self.target_devices) > 1 and len(pairs) > 1:
            n = len(self.target_devices)
            parts = map_devices(self._score_on_device, [(pairs[i::n], settings) for i in range(n)], self.target_devices)
            out = np.empty((len(states), len(pairs)), dtype=np.float32)
            for i, part in enumerate(parts):
                out[:, i::n] = part
        else:
            out = self._score_on_device(device or self.target_devices[0], pairs, settings)
        return [sigmoid(row) if normalize else row.tolist() for row in out]

    def _score_on_device(self, device: str, pairs: list[tuple[str, str]], settings: dict) -> np.ndarray:
        import torch

        from bgekit.models.gemma2_lightweight import Compression

        prompt = self.kind.prompt if settings["prompt"] is None else settings["prompt"]
        features = llm_features(self.tokenizer, pairs, settings["max_length"], settings["query_max_length"], prompt,
                                always_bos=True)
        ratio, compress_layers = settings["compression"]
        self._to(device)

        @torch.inference_mode()
        def forward(batch):
            enc = pad_features(self.tokenizer, batch, pad_to_multiple_of=8).to(device)
            compression = None
            if self.kind.compresses and ratio != 1 and compress_layers:
                lengths = [torch.tensor([f[k] for f in batch], device=device) for k in ("query_length", "prompt_length")]
                compression = Compression(ratio, compress_layers, *lengths)
            out = self.model(enc["input_ids"], enc["attention_mask"], settings["states"], settings["heads"],
                             compression=compression)  # (n, B)
            return out.T.cpu()  # (B, n)

        rows = run_sorted(features, [len(f["input_ids"]) for f in features], forward, settings["batch_size"], device,
                          desc="Scoring", show_progress=settings["show_progress"])
        return torch.stack(rows).T.numpy()  # (n, N)

    def _to(self, device: str) -> None:
        if device != self._device:
            self.model.to(device)
            self._device = device

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model_name_or_path!r}, kind={self.kind.name!r}, "
                f"dtype={str(self.dtype).replace('torch.', '')})")
