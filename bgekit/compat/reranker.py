"""FlagEmbedding-named rerankers (FlagReranker, FlagLLMReranker, FlagAutoReranker), thin over :class:`Reranker`.

Signatures and defaults are those of FlagEmbedding 1.4.2. Differences on purpose:
- an unknown keyword argument raises TypeError (the reference stores constructor extras silently and
  passes ``compute_score`` extras to the tokenizer);
- an empty list of pairs returns ``[]`` (the reference raises IndexError); a malformed pair raises TypeError
  naming its index;
- several devices return a list like one device does (the reference returns a numpy array then);
- ``FlagReranker`` also takes ``use_bf16``; ``use_bf16=True`` on CPU runs real bf16;
- ``use_dataloader`` / ``num_workers`` are accepted and change nothing (the reference's dataloader path
  crashes in 1.4.2);
- a query longer than the whole pair budget is cut instead of overflowing ``max_length``
  (see :mod:`bgekit.reranker_inputs`).
"""
from __future__ import annotations

import importlib
from typing import Any

from bgekit.batching import check_batch_size
from bgekit.compat.abstract import AbsReranker, passage_max_length_note
from bgekit.registry import LLM_PASSAGE_INSTRUCTION, LLM_QUERY_INSTRUCTION, ModelSpec, resolve_reranker
from bgekit.reranker import Reranker, check_length, check_normalize, check_pairs, sigmoid


class _OnDevice:
    """FlagEmbedding's ``compute_score_single_gpu`` and attribute names over the native Reranker."""

    @property
    def query_instruction_for_rerank(self) -> str | None:
        return self.query_instruction

    @query_instruction_for_rerank.setter
    def query_instruction_for_rerank(self, value: str | None) -> None:
        self.query_instruction = value

    @property
    def passage_instruction_for_rerank(self) -> str | None:
        return self.passage_instruction

    @passage_instruction_for_rerank.setter
    def passage_instruction_for_rerank(self, value: str | None) -> None:
        self.passage_instruction = value

    def _single_gpu(self, sentence_pairs, batch_size, query_max_length, max_length, normalize, device,
                    prompt=None) -> list[float]:
        """Scores of pairs given as they are (no instruction added) on one device."""
        pairs = check_pairs(sentence_pairs)
        max_length = check_length(self.max_length if max_length is None else max_length, "max_length")
        if query_max_length is None:
            query_max_length = self.query_max_length or max(1, max_length * 3 // 4)
        normalize = self.normalize if normalize is None else check_normalize(normalize)
        if not pairs:
            return []
        scores = self._score_on_device(device or self.target_devices[0], pairs,
                                       check_batch_size(self.batch_size if batch_size is None else batch_size),
                                       max_length, check_length(query_max_length, "query_max_length"),
                                       self.prompt if prompt is None else prompt, None)
        return sigmoid(scores) if normalize else scores.tolist()


class FlagReranker(_OnDevice, Reranker, AbsReranker):
    """Encoder cross-encoders such as bge-reranker-v2-m3 (FlagEmbedding's ``FlagReranker``).

    Example:
        >>> reranker = FlagReranker("BAAI/bge-reranker-v2-m3", use_fp16=True)       # doctest: +SKIP
        >>> reranker.compute_score(["what is panda?", "The giant panda is a bear."])  # doctest: +SKIP
        [5.26]
    """

    def __init__(
        self,
        model_name_or_path: str,
        use_fp16: bool = False,
        query_instruction_for_rerank: str | None = None,
        query_instruction_format: str = "{}{}",
        passage_instruction_for_rerank: str | None = None,
        passage_instruction_format: str = "{}{}",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        devices: Any = None,
        batch_size: int = 128,
        query_max_length: int | None = None,
        max_length: int = 512,
        normalize: bool = False,
        use_bf16: bool = False,
        passage_max_length: int | None = None,
    ):
        passage_max_length_note(passage_max_length)
        super().__init__(
            model_name_or_path,
            spec=ModelSpec("cross-encoder", trust_remote_code=trust_remote_code),
            query_instruction=query_instruction_for_rerank,
            query_instruction_format=query_instruction_format,
            passage_instruction=passage_instruction_for_rerank,
            passage_instruction_format=passage_instruction_format,
            devices=devices,
            use_fp16=use_fp16,
            use_bf16=use_bf16,
            batch_size=batch_size,
            max_length=max_length,
            query_max_length=query_max_length,
            normalize=normalize,
            cache_dir=cache_dir,
        )
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16

    def compute_score(self, sentence_pairs, batch_size: int | None = None, query_max_length: int | None = None,
                      max_length: int | None = None, normalize: bool | None = None) -> list[float]:
        """Scores of one ``[query, passage]`` pair or a list of them: always a list of floats.

        Args:
            sentence_pairs: a pair or a list of pairs.
            batch_size, query_max_length, max_length, normalize: override the constructor's values.
        """
        return self.score(sentence_pairs, batch_size=batch_size, max_length=max_length,
                          query_max_length=query_max_length, normalize=normalize)

    def compute_score_single_gpu(self, sentence_pairs, batch_size: int | None = None,
                                 query_max_length: int | None = None, max_length: int | None = None,
                                 normalize: bool | None = None, device: str | None = None) -> list[float]:
        """Scores on one device (default: the first target device); the pairs are used as given (no instruction)."""
        return self._single_gpu(sentence_pairs, batch_size, query_max_length, max_length, normalize, device)


class FlagLLMReranker(_OnDevice, Reranker, AbsReranker):
    """Decoder-only "Yes"-logit rerankers such as bge-reranker-v2-gemma (FlagEmbedding's ``FlagLLMReranker``).

    Example:
        >>> reranker = FlagLLMReranker("BAAI/bge-reranker-v2-gemma", use_bf16=True)  # doctest: +SKIP
        >>> reranker.compute_score([["what is panda?", "hi"], ["what is panda?", "The giant panda ..."]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model_name_or_path: str,
        peft_path: str | None = None,
        use_fp16: bool = False,
        use_bf16: bool = False,
        query_instruction_for_rerank: str | None = LLM_QUERY_INSTRUCTION,
        query_instruction_format: str = "{}{}",
        passage_instruction_for_rerank: str | None = LLM_PASSAGE_INSTRUCTION,
        passage_instruction_format: str = "{}{}",
        cache_dir: str | None = None,
        trust_remote_code: bool = False,
        devices: Any = None,
        prompt: str | None = None,
        batch_size: int = 128,
        query_max_length: int | None = None,
        max_length: int = 512,
        normalize: bool = False,
        passage_max_length: int | None = None,
    ):
        passage_max_length_note(passage_max_length)
        super().__init__(
            model_name_or_path,
            spec=ModelSpec("llm", trust_remote_code=trust_remote_code),
            query_instruction=query_instruction_for_rerank,
            query_instruction_format=query_instruction_format,
            passage_instruction=passage_instruction_for_rerank,
            passage_instruction_format=passage_instruction_format,
            prompt=prompt,
            devices=devices,
            use_fp16=use_fp16,
            use_bf16=use_bf16,
            batch_size=batch_size,
            max_length=max_length,
            query_max_length=query_max_length,
            normalize=normalize,
            peft_path=peft_path,
            cache_dir=cache_dir,
        )
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16

    def compute_score(self, sentence_pairs, batch_size: int | None = None, query_max_length: int | None = None,
                      max_length: int | None = None, prompt: str | None = None, normalize: bool | None = None,
                      use_dataloader: bool = False, num_workers: int | None = None) -> list[float]:
        """Scores of one ``[query, passage]`` pair or a list of them: always a list of floats.

        Args:
            sentence_pairs: a pair or a list of pairs.
            batch_size, query_max_length, max_length, prompt, normalize: override the constructor's values.
            use_dataloader, num_workers: accepted for compatibility; they change nothing.
        """
        return self.score(sentence_pairs, batch_size=batch_size, max_length=max_length,
                          query_max_length=query_max_length, normalize=normalize, prompt=prompt)

    def compute_score_single_gpu(self, sentence_pairs, batch_size: int | None = None,
                                 query_max_length: int | None = None, max_length: int | None = None,
                                 prompt: str | None = None, normalize: bool | None = None,
                                 use_dataloader: bool = False, num_workers: int | None = None,
                                 device: str | None = None) -> list[float]:
        """Scores on one device (default: the first target device); the pairs are used as given (no instruction)."""
        return self._single_gpu(sentence_pairs, batch_size, query_max_length, max_length, normalize, device, prompt)


def _layerwise_class(name: str):
    def load():
        return getattr(importlib.import_module("bgekit.compat.layerwise"), name)

    return load


# FlagEmbedding's model_class values -> our classes (layerwise / lightweight imported on use).
RERANKER_CLASSES = {
    "encoder-only-base": lambda: FlagReranker,
    "decoder-only-base": lambda: FlagLLMReranker,
    "decoder-only-layerwise": _layerwise_class("LayerWiseFlagLLMReranker"),
    "decoder-only-lightweight": _layerwise_class("LightWeightFlagLLMReranker"),
}
KIND_TO_CLASS = {"cross-encoder": "encoder-only-base", "llm": "decoder-only-base",
                 "layerwise": "decoder-only-layerwise", "lightweight": "decoder-only-lightweight"}


class FlagAutoReranker:
    """Pick the reranker class for a model (FlagEmbedding's ``FlagAutoReranker``).

    Unlike the reference, a folder resolves by the spec bgekit saved in it, then by its config.json, then by
    its name (see :func:`bgekit.registry.resolve_reranker`), so fine-tuned or renamed copies load too.

    Example:
        >>> reranker = FlagAutoReranker.from_finetuned("BAAI/bge-reranker-v2-m3")  # doctest: +SKIP
    """

    def __init__(self):
        raise EnvironmentError("FlagAutoReranker is instantiated with FlagAutoReranker.from_finetuned(model_name_or_path)")

    @classmethod
    def from_finetuned(cls, model_name_or_path: str, model_class: str | None = None, use_fp16: bool = False,
                       trust_remote_code: bool | None = None, **kwargs: Any):
        """Load ``model_name_or_path`` with the right reranker class.

        Args:
            model_name_or_path: a folder or a hub name.
            model_class: "encoder-only-base", "decoder-only-base", "decoder-only-layerwise" or
                "decoder-only-lightweight"; None resolves it from the folder and name.
            use_fp16: half precision on GPU (CPU runs fp32).
            trust_remote_code: None takes the model table's value (False for an explicit model_class).
            **kwargs: passed to that class; unknown ones raise TypeError.

        Raises:
            ValueError: an unknown model_class.
            UnknownModelError: the kind cannot be resolved.
        """
        model_class = getattr(model_class, "value", model_class)
        if model_class is not None:
            if model_class not in RERANKER_CLASSES:
                raise ValueError(f"unknown model_class {model_class!r}; valid: {', '.join(RERANKER_CLASSES)}")
            remote = False
        else:
            from bgekit.backends import locate

            spec = resolve_reranker(model_name_or_path, folder=locate(model_name_or_path, kwargs.get("cache_dir")))
            model_class, remote = KIND_TO_CLASS[spec.kind], spec.trust_remote_code
        klass = RERANKER_CLASSES[model_class]()
        return klass(model_name_or_path, use_fp16=use_fp16,
                     trust_remote_code=remote if trust_remote_code is None else trust_remote_code, **kwargs)
