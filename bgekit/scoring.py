"""Similarity scores of embeddings: dense dot, sparse lexical match, ColBERT max-sim, and their weighted fusion.

Pure functions of numpy arrays (torch tensors are accepted where noted); nothing here loads a model.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from bgekit.types import SparseVector

# Fused modes of BGE-M3 -> the single scores they average, in FlagEmbedding's key order.
MODES: dict[str, tuple[str, ...]] = {
    "colbert": ("colbert",),
    "sparse": ("sparse",),
    "dense": ("dense",),
    "sparse+dense": ("sparse", "dense"),
    "colbert+sparse+dense": ("colbert", "sparse", "dense"),
}
WEIGHT_ORDER = ("dense", "sparse", "colbert")  # order of FlagEmbedding's weights_for_different_modes


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def dense_scores(q: Any, p: Any) -> np.ndarray:
    """Inner products of every query with every passage. (Q, D), (P, D) -> (Q, P) float32.

    Example:
        >>> dense_scores([[1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]).tolist()
        [[0.5, 0.0]]
    """
    return _array(q) @ _array(p).T


def lexical_score(a: Mapping | SparseVector, b: Mapping | SparseVector) -> float:
    """Sum of weight products over the tokens two lexical-weight vectors share.

    Args:
        a, b: ``{str(token_id): weight}`` dicts (FlagEmbedding's form) or :class:`SparseVector`.

    Example:
        >>> lexical_score({"5": 0.5, "9": 1.0}, {"9": 0.25, "7": 2.0})
        0.25
    """
    if isinstance(a, SparseVector) and isinstance(b, SparseVector):
        return a.dot(b)
    a, b = _as_mapping(a, "a"), _as_mapping(b, "b")
    if len(b) < len(a):
        a, b = b, a
    return float(sum(float(w) * float(b[k]) for k, w in a.items() if k in b))


def _as_mapping(x: Any, name: str) -> Mapping:
    if isinstance(x, SparseVector):
        return x.to_dict()
    if isinstance(x, Mapping):
        return {str(k): v for k, v in x.items()}
    raise TypeError(f"{name} must be a dict of token id -> weight or a SparseVector, got {type(x).__name__}")


def lexical_scores(a: Sequence, b: Sequence) -> np.ndarray:
    """:func:`lexical_score` of every item of ``a`` with every item of ``b``. -> (len(a), len(b)) float64."""
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i, j] = lexical_score(x, y)
    return out


def maxsim(q: Any, p: Any) -> float:
    """ColBERT late interaction: each query vector's best inner product with a passage vector, averaged.

    Args:
        q: (m, d) query token vectors (numpy or torch).
        p: (n, d) passage token vectors.

    Returns:
        ``mean_i max_j <q_i, p_j>``; 0.0 when either side has no vectors.

    Example:
        >>> maxsim([[1.0, 0.0], [0.0, 1.0]], [[0.5, -1.0], [-0.5, -0.25]])  # (0.5 + -0.25) / 2
        0.125
    """
    q, p = _array(q), _array(p)
    if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1]:
        raise ValueError(f"maxsim needs (m, d) and (n, d) arrays, got {q.shape} and {p.shape}")
    if not len(q) or not len(p):
        return 0.0
    best = (q @ p.T).max(axis=1)  # (m,)
    return float(best.sum(dtype=np.float32) / np.float32(len(q)))


def check_weights(weights: Sequence[float] | None) -> dict[str, float]:
    """FlagEmbedding's ``[dense, sparse, colbert]`` weights as a dict; None gives 1, 1, 1."""
    if weights is None:
        weights = (1.0, 1.0, 1.0)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != 3:
        raise ValueError(f"weights_for_different_modes must be 3 numbers [dense, sparse, colbert], got {weights!r}")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer)):
            raise ValueError(f"weights_for_different_modes[{i}] must be a number, got {w!r}")
    return dict(zip(WEIGHT_ORDER, (float(w) for w in weights)))


def fuse(scores: Mapping[str, Any], weights: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Every mode of :data:`MODES`: the weighted mean of its single scores.

    Args:
        scores: "dense", "sparse" and "colbert" -> scores of the same shape.
        weights: "dense", "sparse" and "colbert" -> weight (see :func:`check_weights`).

    Returns:
        mode -> float64 scores, in :data:`MODES` order.

    Example:
        >>> s = fuse({"dense": [0.5], "sparse": [0.25], "colbert": [1.0]}, {"dense": 1, "sparse": 1, "colbert": 2})
        >>> s["sparse+dense"].tolist(), s["colbert+sparse+dense"].tolist()
        ([0.375], [0.6875])
    """
    out = {}
    for mode, parts in MODES.items():
        total = sum(weights[k] for k in parts)
        if len(parts) > 1 and total == 0:
            raise ValueError(f"the weights of {mode!r} sum to 0; give a non-zero weight to one of {parts}")
        if len(parts) == 1:
            out[mode] = np.asarray(scores[mode], dtype=np.float64)
        else:
            out[mode] = sum(weights[k] * np.asarray(scores[k], dtype=np.float64) for k in parts) / total
    return out
