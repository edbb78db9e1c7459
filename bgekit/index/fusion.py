"""Fusion of ranked lists: weighted sum of scores, and reciprocal-rank fusion (RRF).

A ranked list is the ``(scores, indices)`` pair every index search returns: arrays (Q, k), best first, with
index -1 marking padding. Fused lists come back in the same form, ties broken by lower document index.

Example:
    >>> import numpy as np
    >>> dense = (np.array([[0.9, 0.5]]), np.array([[3, 1]]))
    >>> sparse = (np.array([[7.0, 2.0]]), np.array([[1, 2]]))
    >>> rrf([dense, sparse], k=60)[1].tolist()
    [[1, 3, 2]]
    >>> weighted_sum([dense, sparse], weights=[1.0, 0.1])[1].tolist()
    [[1, 3, 2]]
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

MISSING = ("min", "zero")


def _check_lists(lists: Sequence[tuple[Any, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    if not isinstance(lists, (list, tuple)) or not lists:
        raise ValueError("fusion needs a non-empty list of (scores, indices) pairs")
    out = []
    for i, pair in enumerate(lists):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"lists[{i}] must be a (scores, indices) pair")
        scores, ids = np.asarray(pair[0], dtype=np.float64), np.asarray(pair[1], dtype=np.int64)
        if scores.ndim != 2 or scores.shape != ids.shape:
            raise ValueError(f"lists[{i}]: scores and indices must be 2-D arrays of one shape, got {scores.shape} and {ids.shape}")
        out.append((scores, ids))
    if len({s.shape[0] for s, _ in out}) != 1:
        raise ValueError(f"all lists must have the same number of queries, got {[s.shape[0] for s, _ in out]}")
    return out


def _to_arrays(per_query: list[dict[int, float]], top_k: int | None) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(d) for d in per_query), default=0) if top_k is None else top_k
    scores = np.full((len(per_query), width), -np.inf, dtype=np.float32)
    ids = np.full((len(per_query), width), -1, dtype=np.int64)
    for row, fused in enumerate(per_query):
        if not fused:
            continue
        docs = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
        vals = np.fromiter(fused.values(), dtype=np.float64, count=len(fused))
        order = np.lexsort((docs, -vals))[:width]
        scores[row, :len(order)] = vals[order]
        ids[row, :len(order)] = docs[order]
    return scores, ids


def rrf(lists: Sequence[tuple[Any, Any]], k: int = 60, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion: a document scores ``sum over lists of 1 / (k + rank)``, rank counted from 1.

    Args:
        lists: ``(scores, indices)`` pairs, each (Q, k_i), best first; index -1 is padding.
        k: the RRF constant (60 in Cormack et al. 2009).
        top_k: keep this many per query (default: every document seen).
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k must be a non-negative number, got {k!r}")
    checked = _check_lists(lists)
    per_query: list[dict[int, float]] = []
    for row in range(checked[0][0].shape[0]):
        fused: dict[int, float] = {}
        for _, ids in checked:
            for rank, doc in enumerate(ids[row].tolist(), 1):
                if doc >= 0:
                    fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
        per_query.append(fused)
    return _to_arrays(per_query, top_k)


def weighted_sum(lists: Sequence[tuple[Any, Any]], weights: Sequence[float], top_k: int | None = None,
                 missing: str = "min") -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of scores over the union of the lists' documents.

    Args:
        lists: ``(scores, indices)`` pairs, each (Q, k_i), best first; index -1 is padding.
        weights: one weight per list.
        top_k: keep this many per query (default: every document seen).
        missing: the score a document gets in a list that did not return it: "min" (that list's lowest score
            for the query, a lower bound of its true score) or "zero". Rescore candidates exactly (the index
            ``score`` methods) to avoid guessing.
    """
    checked = _check_lists(lists)
    if len(weights) != len(checked):
        raise ValueError(f"got {len(weights)} weights for {len(checked)} lists")
    fill = {"min": lambda s: float(s.min()) if s.size else 0.0, "zero": lambda s: 0.0}
    if missing not in fill:
        raise ValueError(f"unknown missing={missing!r}; valid: {', '.join(fill)}")
    per_query: list[dict[int, float]] = []
    for row in range(checked[0][0].shape[0]):
        parts = []
        for scores, ids in checked:
            keep = ids[row] >= 0
            parts.append((dict(zip(ids[row][keep].tolist(), scores[row][keep].tolist())), fill[missing](scores[row][keep])))
        docs = set().union(*(p[0] for p in parts))
        per_query.append({d: sum(w * p.get(d, default) for w, (p, default) in zip(weights, parts)) for d in docs})
    return _to_arrays(per_query, top_k)


FUSIONS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {"rrf": rrf, "weighted_sum": weighted_sum}


def fuse(method: str, lists: Sequence[tuple[Any, Any]], **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to a fusion method by name ("rrf" or "weighted_sum"); options go to that function."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}; valid: {', '.join(FUSIONS)}")
    return FUSIONS[method](lists, **options)
