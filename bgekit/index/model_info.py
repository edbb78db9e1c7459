"""What an index records about the model that built it, and the check that refuses a different query model.

Settings are compared field by field (the error names the field), and the weights by a probe: the index keeps
the raw embedding of a fixed text; a query model must reproduce it (cosine >= 0.999, which fp32, bf16 and fp16
runs of one checkpoint all reach, and another checkpoint of the same architecture does not).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bgekit.errors import ModelMismatch

PROBE_TEXT = "bgekit index probe: the giant panda eats bamboo in the mountains of Sichuan, 1869."
PROBE_MIN_COSINE = 0.999
# Settings that change query vectors' meaning vs. the stored ones; passage settings matter when adding documents.
QUERY_FIELDS = ("kind", "dim", "colbert_dim", "pooling", "normalize", "truncate_dim")
PASSAGE_FIELDS = ("passage_instruction", "passage_instruction_format", "passage_max_length")


class IndexModelMismatch(ModelMismatch):
    """The model given to an index is not the one it was built with."""


@dataclass(frozen=True)
class ModelInfo:
    """The model an index was built with (stored in the index manifest).

    Attributes:
        name: the model's name or (absolute) folder, used to reload it (``bgekit index add``, ``bgekit serve``).
        kind, dim, colbert_dim, pooling, normalize, truncate_dim: what shapes the vectors.
        passage_*: how documents were encoded; query_*: the query side at build time (informational).
        spec: the model's :class:`~bgekit.registry.ModelSpec` as JSON.
        probe: raw embedding of :data:`PROBE_TEXT` (no instruction).
        visual: a Visualized-BGE model's weights file (path, size, fingerprint), vision tower and image probe
            (see :mod:`bgekit.visual.index`); None for text embedders.
    """

    name: str
    kind: str
    dim: int
    colbert_dim: int | None = None
    pooling: str | None = None
    normalize: bool = True
    truncate_dim: int | None = None
    passage_instruction: str | None = None
    passage_instruction_format: str = "{}{}"
    passage_max_length: int | None = None
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    spec: dict = field(default_factory=dict)
    probe: list = field(default_factory=list)
    visual: dict | None = None

    @classmethod
    def of(cls, model: Any) -> "ModelInfo":
        """Describe a loaded bgekit embedder (an :class:`~bgekit.encoder.Embedder` or M3 embedder)."""
        if getattr(model, "visual", False):
            from bgekit.visual.index import describe

            return cls(**describe(model))
        for attr in ("spec", "dim", "encode", "encode_corpus"):
            if not hasattr(model, attr):
                raise TypeError(f"an index needs a bgekit embedder (Embedder / M3Embedder), got {type(model).__name__}")
        name = str(model.model_name_or_path)
        if os.path.isdir(name):
            name = os.path.abspath(name)
        probe = np.asarray(model.encode([PROBE_TEXT], instruction=None, convert_to_numpy=True, show_progress=False))
        kind = model.spec.kind
        return cls(name=name, kind=kind, dim=int(model.dim),
                   colbert_dim=int(model.colbert_vector_dim) if hasattr(model, "encode_multi") else None,
                   pooling=model.pooling_method, normalize=bool(model.normalize_embeddings),
                   truncate_dim=model.truncate_dim,
                   passage_instruction=model.passage_instruction_for_retrieval,
                   passage_instruction_format=model.passage_instruction_format,
                   passage_max_length=model.passage_max_length,
                   query_instruction=model.query_instruction_for_retrieval,
                   query_instruction_format=model.query_instruction_format,
                   spec=model.spec.to_json(), probe=[float(x) for x in probe[0]])

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str = "manifest") -> "ModelInfo":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown model fields {unknown}; valid: {sorted(names)}")
        return cls(**data)

    def check(self, model: Any, use: str = "query") -> None:
        """Refuse ``model`` unless it is the model this index was built with.

        Args:
            model: a loaded bgekit embedder.
            use: "query" (searching) or "passage" (adding documents: passage settings must match too).

        Raises:
            IndexModelMismatch: naming the first differing setting, or the probe's cosine.
        """
        uses = {"query": QUERY_FIELDS, "passage": QUERY_FIELDS + PASSAGE_FIELDS}
        if use not in uses:
            raise ValueError(f"unknown use {use!r}; valid: {', '.join(uses)}")
        other = ModelInfo.of(model)
        if self.visual is not None or other.visual is not None:
            from bgekit.visual.index import check

            problem = check(self.visual, other.visual, self.name, use)
            if problem:
                raise IndexModelMismatch(problem)
        for name in uses[use]:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                raise IndexModelMismatch(
                    f"the index was built with {self.name!r} ({name}={mine!r}); the {use} model {other.name!r} has "
                    f"{name}={theirs!r}. Load the index's model: {self.name!r}")
        a, b = np.asarray(self.probe, np.float64), np.asarray(other.probe, np.float64)
        cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
        if cos < PROBE_MIN_COSINE:
            raise IndexModelMismatch(
                f"the {use} model {other.name!r} does not reproduce the embeddings of the model the index was "
                f"built with ({self.name!r}): probe cosine {cos:.4f} < {PROBE_MIN_COSINE}. Load {self.name!r}")
