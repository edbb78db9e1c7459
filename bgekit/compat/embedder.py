"""FlagEmbedding-named entry points with the reference signatures and defaults, thin over the native API.

Differences on purpose (see docs/compat.md):
- an unknown keyword argument raises TypeError (the reference stores it silently);
- ``passage_instruction_for_retrieval`` / ``passage_instruction_format`` are named parameters (the reference
  reads them from ``**kwargs``);
- extra tokenizer options to ``encode*`` are limited to ``pad_to_multiple_of``;
- ``use_bf16=True`` on CPU runs real bf16 (the reference always runs fp32 on CPU); outputs are float32.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

from bgekit.batching import check_batch_size, check_texts
from bgekit.compat import pool as _pool
from bgekit.compat.abstract import AbsEmbedder
from bgekit.compat.base import native_kwargs
from bgekit.compat.m3 import BGEM3FlagModel
from bgekit.encoder import Embedder, _check_length
from bgekit.registry import ICL_QUERY, INSTRUCT_QUERY, ModelSpec, resolve

logger = logging.getLogger(__name__)


class _OnDevice:
    """FlagEmbedding's single-device methods over the native per-device loop."""

    def encode_single_device(self, sentences, batch_size: int = 256, max_length: int = 512,
                             convert_to_numpy: bool = True, device: str | None = None,
                             pad_to_multiple_of: int | None = None, show_progress: bool | None = None):
        """Encode on one device (default: the first target device), no instruction added."""
        return self._on_device(sentences, batch_size, max_length, convert_to_numpy, device, pad_to_multiple_of,
                               show_progress, icl=False)

    def _on_device(self, sentences, batch_size, max_length, convert_to_numpy, device, pad_to_multiple_of,
                   show_progress, icl: bool, instruction: str | None = None):
        texts, single = check_texts(sentences, "queries" if icl else "sentences")
        out = self._encode_on_device(device or self.target_devices[0], texts, check_batch_size(batch_size),
                                     _check_length(max_length, "max_length"), pad_to_multiple_of, icl, show_progress,
                                     instruction)
        if not convert_to_numpy:
            import torch

            out = torch.from_numpy(out)
        return out[0] if single else out


class FlagModel(_OnDevice, Embedder, AbsEmbedder):
    """BGE v1/v1.5 and other encoder-only embedders (FlagEmbedding's ``FlagModel``)."""

    KIND = "encoder"
    DEFAULT_POOLING_METHOD = "cls"

    def __init__(
        self,
        model_name_or_path: str,
        normalize_embeddings: bool = True,
        use_fp16: bool = True,
        use_bf16: bool = False,
        query_instruction_for_retrieval: str | None = None,
        query_instruction_format: str = "{}{}",
        devices: Any = None,
        pooling_method: str = "cls",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        batch_size: int = 256,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        convert_to_numpy: bool = True,
        truncate_dim: int | None = None,
        passage_instruction_for_retrieval: str | None = None,
        passage_instruction_format: str = "{}{}",
    ):
        super().__init__(model_name_or_path, spec=ModelSpec(self.KIND, pooling_method), **native_kwargs(locals()))
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16


class FlagLLMModel(_OnDevice, Embedder, AbsEmbedder):
    """Decoder-only embedders with last-token pooling (FlagEmbedding's ``FlagLLMModel``)."""

    KIND = "decoder"
    DEFAULT_POOLING_METHOD = "last_token"

    def __init__(
        self,
        model_name_or_path: str,
        normalize_embeddings: bool = True,
        use_fp16: bool = True,
        use_bf16: bool = False,
        query_instruction_for_retrieval: str | None = None,
        query_instruction_format: str = INSTRUCT_QUERY,
        devices: Any = None,
        pooling_method: str = "last_token",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        batch_size: int = 256,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        convert_to_numpy: bool = True,
        truncate_dim: int | None = None,
        passage_instruction_for_retrieval: str | None = None,
        passage_instruction_format: str = "{}{}",
    ):
        _check_last_token(pooling_method)
        super().__init__(model_name_or_path, spec=ModelSpec(self.KIND, "last_token", query_instruction_format),
                         **native_kwargs(locals()))
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16


class FlagICLModel(_OnDevice, Embedder, AbsEmbedder):
    """In-context-learning embedders such as bge-en-icl (FlagEmbedding's ``FlagICLModel``)."""

    KIND = "icl"
    DEFAULT_POOLING_METHOD = "last_token"

    def __init__(
        self,
        model_name_or_path: str,
        normalize_embeddings: bool = True,
        use_fp16: bool = True,
        use_bf16: bool = False,
        query_instruction_for_retrieval: str | None = None,
        query_instruction_format: str = ICL_QUERY,
        suffix: str = "\n<response>",
        devices: Any = None,
        examples_for_task: list[dict] | None = None,
        examples_instruction_format: str = "<instruct>{}\n<query>{}\n<response>{}",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        batch_size: int = 256,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        convert_to_numpy: bool = True,
        truncate_dim: int | None = None,
        pooling_method: str = "last_token",
        passage_instruction_for_retrieval: str | None = None,
        passage_instruction_format: str = "{}{}",
    ):
        _check_last_token(pooling_method)
        spec = ModelSpec(self.KIND, "last_token", query_instruction_format.replace("\\n", "\n"))
        super().__init__(model_name_or_path, spec=spec, examples=examples_for_task,
                         examples_instruction_format=examples_instruction_format, icl_suffix=suffix,
                         **native_kwargs(locals()))
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16
        self.query_pool = None

    def set_examples(self, examples_for_task: list[dict] | None = None) -> None:
        """Set the few-shot examples (None keeps the current ones) and rebuild the query prefix."""
        super().set_examples(examples_for_task)

    def encode_queries_single_device(self, queries, batch_size: int = 256, max_length: int = 512,
                                     convert_to_numpy: bool = True, device: str | None = None,
                                     pad_to_multiple_of: int | None = None, show_progress: bool | None = None):
        """Encode queries on one device with the few-shot prefix and the query instruction."""
        return self._on_device(queries, batch_size, max_length, convert_to_numpy, device, pad_to_multiple_of,
                               show_progress, icl=True, instruction=self.query_instruction_for_retrieval)

    _encode_queries_multi_process_worker = staticmethod(_pool.make_worker("encode_queries_single_device"))

    @staticmethod
    def get_detailed_example(instruction_format: str, instruction: str, query: str, response: str) -> str:
        """One few-shot example: ``instruction_format.format(instruction, query, response)`` (backslash-n: newline)."""
        return instruction_format.replace("\\n", "\n").format(instruction, query, response)

    def stop_self_query_pool(self) -> None:
        """Close the query pool (if any) and move the model to the CPU."""
        _pool.release(self, "query_pool")


def _check_last_token(pooling_method: str) -> None:
    if pooling_method != "last_token":
        raise ValueError(f"pooling_method must be 'last_token' for LLM-based embedders, got {pooling_method!r}")


# FlagEmbedding's model_class values -> our classes.
MODEL_CLASSES = {
    "encoder-only-base": lambda: FlagModel,
    "encoder-only-m3": lambda: BGEM3FlagModel,
    "decoder-only-base": lambda: FlagLLMModel,
    "decoder-only-icl": lambda: FlagICLModel,
    "decoder-only-pseudo_moe": lambda: importlib.import_module("bgekit.compat.pseudo_moe").FlagPseudoMoEModel,
}
_KIND_TO_CLASS = {"encoder": "encoder-only-base", "m3": "encoder-only-m3", "decoder": "decoder-only-base", "icl": "decoder-only-icl"}


class FlagAutoModel:
    """Pick the embedder class for a model (FlagEmbedding's ``FlagAutoModel``).

    Unlike the reference, a folder resolves by the spec bgekit saved in it, then by its files, then by
    its name, so a fine-tuned or renamed copy loads as the right kind.

    Example:
        >>> model = FlagAutoModel.from_finetuned("all-MiniLM-L6-v2")
    """

    def __init__(self):
        raise EnvironmentError("FlagAutoModel is instantiated with FlagAutoModel.from_finetuned(model_name_or_path)")

    @classmethod
    def from_finetuned(
        cls,
        model_name_or_path: str,
        model_class: str | None = None,
        normalize_embeddings: bool = True,
        use_fp16: bool = True,
        use_bf16: bool = False,
        query_instruction_for_retrieval: str | None = None,
        devices: Any = None,
        pooling_method: str | None = None,
        trust_remote_code: bool | None = None,
        query_instruction_format: str | None = None,
        truncate_dim: int | None = None,
        **kwargs: Any,
    ) -> Embedder:
        """Load ``model_name_or_path`` with the right class; ``kwargs`` go to that class (unknown ones raise)."""
        model_class = getattr(model_class, "value", model_class)
        if model_class is not None:
            if model_class not in MODEL_CLASSES:
                raise ValueError(f"unknown model_class {model_class!r}; valid: {', '.join(MODEL_CLASSES)}")
            klass = MODEL_CLASSES[model_class]()
            spec = ModelSpec(klass.KIND if hasattr(klass, "KIND") else "m3", klass.DEFAULT_POOLING_METHOD)
        else:
            from bgekit.backends import locate

            spec = resolve(model_name_or_path, folder=locate(model_name_or_path, kwargs.get("cache_dir")))
            if not spec.is_embedder:
                raise ValueError(f"{model_name_or_path!r} is a {spec.kind} reranker, not an embedder; use FlagAutoReranker")
            klass = MODEL_CLASSES[_KIND_TO_CLASS[spec.kind]]()
        pooling_method = pooling_method or spec.pooling or klass.DEFAULT_POOLING_METHOD
        return klass(
            model_name_or_path,
            normalize_embeddings=normalize_embeddings,
            use_fp16=use_fp16,
            use_bf16=use_bf16,
            query_instruction_for_retrieval=query_instruction_for_retrieval,
            query_instruction_format=query_instruction_format or spec.query_instruction_format,
            devices=devices,
            pooling_method=pooling_method,
            trust_remote_code=spec.trust_remote_code if trust_remote_code is None else trust_remote_code,
            truncate_dim=truncate_dim,
            **kwargs,
        )
