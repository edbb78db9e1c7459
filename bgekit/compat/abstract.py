"""FlagEmbedding's extension points, ``AbsEmbedder`` and ``AbsReranker``, as real base classes.

A subclass implements the single-device method FlagEmbedding's docs name (``encode_single_device`` for an
embedder, ``compute_score_single_gpu`` for a reranker) and inherits the rest: instructions, encode /
encode_queries / encode_corpus / compute_score, several devices (one process per device through
:func:`bgekit.batching.map_devices`) and the pool methods. bgekit's own FlagEmbedding-named classes derive from
them too, so ``isinstance(model, AbsEmbedder)`` holds as in FlagEmbedding.

Example:
    >>> import numpy as np
    >>> class Lengths(AbsEmbedder):
    ...     def encode_single_device(self, sentences, batch_size=256, max_length=512, convert_to_numpy=True,
    ...                              device=None):
    ...         one = isinstance(sentences, str)
    ...         out = np.array([[len(s), 1.0] for s in ([sentences] if one else sentences)])
    ...         return out[0] if one else out
    >>> Lengths("none", devices="cpu").encode_queries(["ab", "c"]).tolist()
    [[2.0, 1.0], [1.0, 1.0]]
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from bgekit.compat import pool as _pool
from bgekit.prompts import apply_instruction

_ONCE: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """A UserWarning shown once per process for ``key``."""
    if key not in _ONCE:
        _ONCE.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def passage_max_length_note(passage_max_length: Any) -> None:
    """FlagEmbedding's reranker docs pass ``passage_max_length``; its rerankers store it and never read it."""
    if passage_max_length is not None:
        warn_once("passage_max_length", "passage_max_length has no effect on a reranker (as in FlagEmbedding, which "
                  "stores it and never reads it): the passage is cut so the whole pair fits max_length, and the "
                  "query is cut to query_max_length")


def get_target_devices(devices: Any) -> list[str]:
    """FlagEmbedding's ``get_target_devices``: None picks every GPU (else MPS, else CPU); an int is a CUDA index."""
    from bgekit.backends import resolve_devices

    return resolve_devices(devices)


def model_dtype(use_fp16: bool, use_bf16: bool):
    """FlagEmbedding's ``get_model_torch_dtype``: the dtype the flags ask for (bf16 wins over fp16)."""
    import torch

    return torch.bfloat16 if use_bf16 else torch.float16 if use_fp16 else torch.float32


class _PoolMethods:
    """The pool methods every FlagEmbedding inference class exposes."""

    pool = None
    use_fp16 = False
    use_bf16 = False

    get_target_devices = staticmethod(get_target_devices)

    def get_model_torch_dtype(self):
        """The dtype the use_fp16 / use_bf16 flags ask for (on CPU, bgekit runs fp16 as fp32)."""
        return model_dtype(self.use_fp16, self.use_bf16)

    def stop_self_pool(self) -> None:
        """Close this object's pool (if any), move the model to the CPU and free cached device memory."""
        _pool.release(self, "pool")

    @staticmethod
    def stop_multi_process_pool(pool) -> None:
        """Close a pool from :meth:`start_multi_process_pool`; it cannot be used afterwards."""
        _pool.stop_pool(pool)

    def _run_single_device(self, device: str, method: str, items: list, kwargs: dict):
        """One device's share of a pool call (runs in the worker process)."""
        return getattr(self, method)(items, device=device, **kwargs)


class AbsEmbedder(_PoolMethods, ABC):
    """Base class of embedders: implement :meth:`encode_single_device`, inherit the rest.

    Args: FlagEmbedding's (model_name_or_path, normalize_embeddings, use_fp16, use_bf16,
    query_instruction_for_retrieval, query_instruction_format, devices, batch_size, query_max_length,
    passage_max_length, convert_to_numpy, truncate_dim), plus passage_instruction_for_retrieval /
    passage_instruction_format, which FlagEmbedding reads from ``**kwargs``. Other keyword arguments raise
    TypeError (FlagEmbedding stores them as attributes); a subclass names its own.
    """

    def __init__(self, model_name_or_path: str, normalize_embeddings: bool = True, use_fp16: bool = True,
                 use_bf16: bool = False, query_instruction_for_retrieval: str | None = None,
                 query_instruction_format: str = "{}{}", devices: Any = None, batch_size: int = 256,
                 query_max_length: int = 512, passage_max_length: int = 512, convert_to_numpy: bool = True,
                 truncate_dim: int | None = None, passage_instruction_for_retrieval: str | None = None,
                 passage_instruction_format: str = "{}{}"):
        self.model_name_or_path = model_name_or_path
        self.normalize_embeddings = normalize_embeddings
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16
        self.query_instruction_for_retrieval = query_instruction_for_retrieval
        self.query_instruction_format = query_instruction_format
        self.passage_instruction_for_retrieval = passage_instruction_for_retrieval
        self.passage_instruction_format = passage_instruction_format
        self.target_devices = self.get_target_devices(devices)
        self.batch_size, self.query_max_length, self.passage_max_length = batch_size, query_max_length, passage_max_length
        self.convert_to_numpy, self.truncate_dim = convert_to_numpy, truncate_dim
        self.tokenizer = self.model = self.pool = None

    @staticmethod
    def get_detailed_instruct(instruction_format: str, instruction: str, sentence: str) -> str:
        """``instruction_format.format(instruction, sentence)``; a literal backslash-n becomes a newline."""
        return apply_instruction(instruction_format, instruction, sentence)

    @abstractmethod
    def encode_single_device(self, sentences, batch_size: int = 256, max_length: int = 512,
                             convert_to_numpy: bool = True, device: str | None = None, **kwargs: Any):
        """Encode ``sentences`` (a string or a list) on one device: (N, D) array, or (D,) for a string."""

    def encode_queries(self, queries, batch_size: int | None = None, max_length: int | None = None,
                       convert_to_numpy: bool | None = None, **kwargs: Any):
        """Encode queries with the query instruction (query_max_length by default)."""
        return self.encode(queries, batch_size, self.query_max_length if max_length is None else max_length,
                           convert_to_numpy, self.query_instruction_for_retrieval, self.query_instruction_format,
                           **kwargs)

    def encode_corpus(self, corpus, batch_size: int | None = None, max_length: int | None = None,
                      convert_to_numpy: bool | None = None, **kwargs: Any):
        """Encode passages with the passage instruction, if any (passage_max_length by default)."""
        return self.encode(corpus, batch_size, self.passage_max_length if max_length is None else max_length,
                           convert_to_numpy, self.passage_instruction_for_retrieval, self.passage_instruction_format,
                           **kwargs)

    def encode(self, sentences, batch_size: int | None = None, max_length: int | None = None,
               convert_to_numpy: bool | None = None, instruction: str | None = None,
               instruction_format: str | None = None, **kwargs: Any):
        """Apply the instruction, then run :meth:`encode_single_device` on one device or on every target device."""
        options = dict(batch_size=self.batch_size if batch_size is None else batch_size,
                       max_length=self.passage_max_length if max_length is None else max_length,
                       convert_to_numpy=self.convert_to_numpy if convert_to_numpy is None else convert_to_numpy,
                       **kwargs)
        if instruction is not None:
            fmt = instruction_format or "{}{}"
            sentences = (apply_instruction(fmt, instruction, sentences) if isinstance(sentences, str)
                         else [apply_instruction(fmt, instruction, s) for s in sentences])
        if isinstance(sentences, str) or len(self.target_devices) == 1:
            return self.encode_single_device(sentences, device=self.target_devices[0], **options)
        if self.pool is None or self.pool["closed"]:
            self.pool = self.start_multi_process_pool(AbsEmbedder._encode_multi_process_worker)
        return self.encode_multi_process(sentences, self.pool, **options)

    _encode_multi_process_worker = staticmethod(_pool.make_worker("encode_single_device"))

    def start_multi_process_pool(self, process_target_func=None):
        """A pool over ``target_devices`` whose workers run the method ``process_target_func`` stands for
        (default: :meth:`encode_single_device`)."""
        return _pool.start_pool(self, process_target_func, "encode_single_device")

    def encode_multi_process(self, sentences, pool, **kwargs: Any):
        """Encode ``sentences`` split into one chunk per device of ``pool``; results concatenated in order."""
        return self._concatenate_results_from_multi_process(_pool.run_chunks(self, sentences, pool, kwargs))

    def _concatenate_results_from_multi_process(self, results_list: list):
        import torch

        if not results_list:
            return np.zeros((0, 0), dtype=np.float32)
        if isinstance(results_list[0], torch.Tensor):
            return torch.cat([r.to(self.target_devices[0]) for r in results_list], dim=0)
        if isinstance(results_list[0], np.ndarray):
            return np.concatenate(results_list, axis=0)
        raise TypeError(f"encode_single_device must return numpy arrays or torch tensors, got {type(results_list[0]).__name__}")

    def _truncate_embeddings(self, embeddings):
        """Keep the first ``truncate_dim`` dimensions (Matryoshka); unchanged when truncate_dim is None."""
        return embeddings if self.truncate_dim is None else embeddings[..., :self.truncate_dim]


class AbsReranker(_PoolMethods, ABC):
    """Base class of rerankers: implement :meth:`compute_score_single_gpu`, inherit the rest.

    Args: FlagEmbedding's (model_name_or_path, use_fp16, query_instruction_for_rerank, query_instruction_format,
    passage_instruction_for_rerank, passage_instruction_format, devices, batch_size, query_max_length, max_length,
    normalize); ``passage_max_length``, which FlagEmbedding's docs pass, is accepted with a one-time warning (it
    has no effect there either). Other keyword arguments raise TypeError.
    """

    def __init__(self, model_name_or_path: str, use_fp16: bool = False, query_instruction_for_rerank: str | None = None,
                 query_instruction_format: str = "{}{}", passage_instruction_for_rerank: str | None = None,
                 passage_instruction_format: str = "{}{}", devices: Any = None, batch_size: int = 128,
                 query_max_length: int | None = None, max_length: int = 512, normalize: bool = False,
                 passage_max_length: int | None = None):
        passage_max_length_note(passage_max_length)
        self.model_name_or_path, self.use_fp16 = model_name_or_path, use_fp16
        self.query_instruction_for_rerank = query_instruction_for_rerank
        self.query_instruction_format = query_instruction_format
        self.passage_instruction_for_rerank = passage_instruction_for_rerank
        self.passage_instruction_format = passage_instruction_format
        self.target_devices = self.get_target_devices(devices)
        self.batch_size, self.query_max_length, self.max_length = batch_size, query_max_length, max_length
        self.normalize = normalize
        self.tokenizer = self.model = self.pool = None

    def get_detailed_instruct(self, instruction_format: str, instruction: str, sentence: str) -> str:
        """``instruction_format.format(instruction, sentence)``; a literal backslash-n becomes a newline."""
        return apply_instruction(instruction_format, instruction, sentence)

    def get_detailed_inputs(self, sentence_pairs) -> list[list[str]]:
        """The pairs with the query / passage instructions applied (a single pair becomes a list of one)."""
        from bgekit.reranker_inputs import check_pairs

        def one(fmt: str, instruction: str | None, text: str) -> str:
            return text if instruction is None else self.get_detailed_instruct(fmt, instruction, text)

        return [[one(self.query_instruction_format, self.query_instruction_for_rerank, q),
                 one(self.passage_instruction_format, self.passage_instruction_for_rerank, p)]
                for q, p in check_pairs(sentence_pairs)]

    @abstractmethod
    def compute_score_single_gpu(self, sentence_pairs, batch_size: int = 256, query_max_length: int | None = None,
                                 max_length: int = 512, normalize: bool = False, device: str | None = None,
                                 **kwargs: Any):
        """Scores of ``sentence_pairs`` (instructions already applied) on one device: a list of floats."""

    def compute_score(self, sentence_pairs, **kwargs: Any):
        """Scores of one ``[query, passage]`` pair or a list of pairs: instructions applied, then
        :meth:`compute_score_single_gpu` on one device or on every target device (then a numpy array)."""
        pairs = self.get_detailed_inputs(sentence_pairs)
        if len(self.target_devices) == 1:
            return self.compute_score_single_gpu(pairs, device=self.target_devices[0], **kwargs)
        if self.pool is None or self.pool["closed"]:
            self.pool = self.start_multi_process_pool()
        return self.encode_multi_process(pairs, self.pool, **kwargs)

    _encode_multi_process_worker = staticmethod(_pool.make_worker("compute_score_single_gpu"))

    def start_multi_process_pool(self):
        """A pool over ``target_devices`` whose workers run :meth:`compute_score_single_gpu`."""
        return _pool.start_pool(self, None, "compute_score_single_gpu")

    def encode_multi_process(self, sentence_pairs, pool, **kwargs: Any) -> np.ndarray:
        """Score ``sentence_pairs`` split into one chunk per device of ``pool``; one array in input order."""
        parts = _pool.run_chunks(self, sentence_pairs, pool, kwargs)
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if parts else np.zeros(0)
