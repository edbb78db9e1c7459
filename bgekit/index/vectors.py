"""Vectors of documents or queries as an index stores them, encoding into them, and their checks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bgekit.index.model_info import ModelInfo
from bgekit.types import SparseVector

OUTPUTS = ("dense", "sparse", "colbert")


@dataclass
class Vectors:
    """Encoded documents or queries; an output not present is None."""

    dense: np.ndarray | None = None            # (N, D) float32
    sparse: list[SparseVector] | None = None    # N sparse lexical vectors
    colbert: list[np.ndarray] | None = None     # N arrays (n_i, C)


def encode(model: Any, texts: list[str], role: str, outputs: Sequence[str], batch_size: int | None = None,
           show_progress: bool | None = False, images: Sequence[Any] | None = None) -> Vectors:
    """Encode ``texts`` as "query" or "passage" into the asked outputs (sparse / ColBERT need BGE-M3).

    ``images`` (a Visualized-BGE model only): one image or None per row, encoded with the row's text, if any.
    """
    roles = {"query": "encode_queries", "passage": "encode_corpus"}
    if role not in roles:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(roles)}")
    if getattr(model, "visual", False):
        from bgekit.visual.index import encode as encode_visual

        return Vectors(encode_visual(model, texts, images, outputs, batch_size, show_progress))
    if images is not None and any(i is not None for i in images):
        raise ValueError(f"image queries or documents need a Visualized-BGE model; {type(model).__name__} "
                         "encodes texts only")
    if hasattr(model, "encode_multi"):
        out = model.encode_multi(texts, role=role, outputs=tuple(outputs), batch_size=batch_size, show_progress=show_progress)
        return Vectors(out.dense, out.sparse, out.colbert)
    if set(outputs) - {"dense"}:
        raise ValueError(f"outputs {sorted(set(outputs) - {'dense'})} need a BGE-M3 model; "
                         f"{type(model).__name__} gives dense vectors only")
    return Vectors(np.asarray(getattr(model, roles[role])(texts, batch_size=batch_size, show_progress=show_progress),
                              dtype=np.float32))


def _check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise ValueError(f"index outputs must be a non-empty subset of {', '.join(OUTPUTS)}; got {list(outputs)}")
    if "dense" not in outputs:
        raise ValueError("an index always holds dense vectors: include 'dense' in outputs")
    return tuple(o for o in OUTPUTS if o in outputs)


def _check_vectors(vectors: Vectors, n: int, outputs: tuple[str, ...], info: ModelInfo) -> Vectors:
    """Vectors for n documents must hold every output the index stores, in the index's shapes."""
    from bgekit.index.dense import as_matrix

    for name in outputs:
        if getattr(vectors, name) is None:
            raise ValueError(f"the index stores {name} vectors: vectors.{name} is missing")
    dense = as_matrix(vectors.dense, "vectors.dense", info.dim)
    if len(dense) != n:
        raise ValueError(f"vectors.dense has {len(dense)} rows for {n} documents")
    sparse = colbert = None
    if "sparse" in outputs:
        sparse = [v if isinstance(v, SparseVector) else SparseVector.from_dict(v) for v in vectors.sparse]
        if len(sparse) != n:
            raise ValueError(f"vectors.sparse has {len(sparse)} entries for {n} documents")
    if "colbert" in outputs:
        colbert = [np.asarray(c, dtype=np.float32) for c in vectors.colbert]
        bad = [i for i, c in enumerate(colbert) if c.ndim != 2 or c.shape[1] != info.colbert_dim]
        if len(colbert) != n or bad:
            raise ValueError(f"vectors.colbert must be {n} arrays (n_i, {info.colbert_dim})"
                             + (f"; entry {bad[0]} has shape {colbert[bad[0]].shape}" if bad else ""))
    return Vectors(dense, sparse, colbert)
