"""Run MTEB tasks on any bgekit embedder: an adapter that the ``mteb`` package accepts as a model.

It follows mteb 2's encoder protocol (``encode(inputs, *, task_metadata, hf_split, hf_subset, prompt_type)``,
``similarity``, ``similarity_pairwise``, ``mteb_model_meta``) and also takes a plain list of strings, as
older mteb versions pass. Queries get an instruction: the task's entry in ``task_instructions`` when there
is one, else the model's own query instruction; documents get the model's passage instruction; other tasks
(STS, classification, clustering...) get the task's instruction if one is given, else none. Queries of ICL
models (bge-en-icl) are wrapped in the model's few-shot prompt as ``encode_queries`` does, with that
instruction as the prompt's instruction.

Example (needs network access for the task data):
    >>> import mteb                                                                   # doctest: +SKIP
    >>> from bgekit.eval.mteb import MTEBModel                                        # doctest: +SKIP
    >>> model = MTEBModel("all-MiniLM-L6-v2")                                         # doctest: +SKIP
    >>> mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact"]))                        # doctest: +SKIP
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

import numpy as np

logger = logging.getLogger(__name__)

# keyword arguments mteb passes to encode() that an embedder has no use for; any other unknown key is a TypeError
_MTEB_ENCODE_KEYS = {"show_progress_bar", "precision", "convert_to_tensor", "convert_to_numpy", "normalize_embeddings",
                     "request_qid", "num_proc", "prompt_name"}


def _texts(inputs: Any) -> list[str]:
    """Texts from a list of strings or from mteb's DataLoader of batches (dicts with a "text" list)."""
    if isinstance(inputs, str):
        return [inputs]
    items = list(inputs) if isinstance(inputs, Iterable) else None
    if items is None:
        raise TypeError(f"inputs must be a list of strings or an iterable of batches, got {type(inputs).__name__}")
    if all(isinstance(x, str) for x in items):
        return items
    texts: list[str] = []
    for i, batch in enumerate(items):
        if not isinstance(batch, Mapping) or "text" not in batch:
            raise TypeError(f"batch {i} must be a dict with a 'text' list (mteb's text input), got {type(batch).__name__}")
        texts.extend(str(t) for t in batch["text"])
    return texts


class MTEBModel:
    """Wrap a bgekit embedder (or a model name) for ``mteb.evaluate``.

    Args:
        model: an embedder object or a name/folder for :func:`bgekit.loading.load_embedder`.
        task_instructions: task name -> instruction for its queries (or for all texts of non-retrieval tasks).
        batch_size: default encoding batch size (mteb's ``batch_size`` wins when it passes one).
        name / revision: what mteb records as the model's name (must contain "/") and revision.
        **model_kwargs: passed to ``load_embedder`` when ``model`` is a name.
    """

    def __init__(self, model: Any = "all-MiniLM-L6-v2", task_instructions: Mapping[str, str] | None = None,
                 batch_size: int = 64, name: str | None = None, revision: str | None = None, **model_kwargs: Any):
        if isinstance(model, str):
            from bgekit.loading import load_embedder

            model = load_embedder(model, **model_kwargs)
        elif model_kwargs:
            raise TypeError(f"model_kwargs {sorted(model_kwargs)} apply only when model is a name")
        self.model = model
        self.task_instructions = dict(task_instructions or {})
        self.batch_size = batch_size
        base = str(getattr(model, "model_name_or_path", type(model).__name__)).rstrip("/").split("/")[-1]
        self.name = name or f"bgekit/{base}"
        self.revision = revision

    def instruction_for(self, task_name: str | None, prompt_type: Any) -> tuple[str, str | None]:
        """``(role, instruction)`` for a task and prompt type ("query", "document" or None)."""
        kind = getattr(prompt_type, "value", prompt_type)
        task_instruction = self.task_instructions.get(task_name) if task_name else None
        if kind == "query":
            return "query", task_instruction if task_instruction is not None else getattr(self.model, "query_instruction_for_retrieval", None)
        if kind == "document":
            return "passage", getattr(self.model, "passage_instruction_for_retrieval", None)
        if kind is not None:
            raise ValueError(f"unknown prompt_type {kind!r}; valid: query, document, None")
        return "text", task_instruction

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str | None = None, hf_subset: str | None = None,
               prompt_type: Any = None, task_name: str | None = None, batch_size: int | None = None,
               **mteb_kwargs: Any) -> np.ndarray:
        """Embeddings (N, D) float32 for mteb; see the module docstring for which instruction applies."""
        unknown = sorted(set(mteb_kwargs) - _MTEB_ENCODE_KEYS)
        if unknown:
            raise TypeError(f"MTEBModel.encode got unexpected keyword arguments {unknown}")
        texts = _texts(inputs)
        task = task_name or getattr(task_metadata, "name", None)
        role, instruction = self.instruction_for(task, prompt_type)
        m = self.model
        fmt = {"query": getattr(m, "query_instruction_format", "{}{}"), "passage": getattr(m, "passage_instruction_format", "{}{}")}
        max_length = getattr(m, "query_max_length", None) if role == "query" else getattr(m, "passage_max_length", None)
        if role == "query" and getattr(getattr(m, "spec", None), "kind", None) == "icl":
            # ICL models wrap queries in their few-shot prompt, with the task's instruction inside it
            out = m.encode_queries(texts, batch_size=batch_size or self.batch_size, max_length=max_length,
                                   instruction=instruction, show_progress=mteb_kwargs.get("show_progress_bar"))
            return np.asarray(out, dtype=np.float32)
        out = m.encode(texts, batch_size=batch_size or self.batch_size, max_length=max_length, instruction=instruction,
                       instruction_format=fmt.get(role, "{}{}"), show_progress=mteb_kwargs.get("show_progress_bar"))
        return np.asarray(out, dtype=np.float32)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Cosine similarity matrix (N1, N2)."""
        a, b = _unit(embeddings1), _unit(embeddings2)
        return a @ b.T

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Cosine similarity of row pairs (N,)."""
        return (_unit(embeddings1) * _unit(embeddings2)).sum(-1)

    @property
    def mteb_model_meta(self):
        """mteb's ModelMeta for this model (needs ``mteb``)."""
        from mteb.models.model_meta import ModelMeta

        dim = getattr(self.model, "dim", None)
        return ModelMeta.create_empty(overwrites={"name": self.name, "revision": self.revision, "embed_dim": dim,
                                                  "similarity_fn_name": "cosine", "framework": ["PyTorch"]})


def _unit(x: Any) -> np.ndarray:
    arr = np.atleast_2d(np.asarray(getattr(x, "cpu", lambda: x)(), dtype=np.float32))
    return arr / np.maximum(np.linalg.norm(arr, axis=-1, keepdims=True), 1e-12)
