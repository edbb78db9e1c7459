"""Shared result types (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseVector:
    """A sparse lexical vector: sorted token ids and their weights (compact, never vocabulary-sized).

    Example:
        >>> v = SparseVector.from_dict({"7": 0.5, "3": 0.25})
        >>> v.indices.tolist(), v.values.tolist()
        ([3, 7], [0.25, 0.5])
        >>> v.to_dict()
        {'3': 0.25, '7': 0.5}
    """

    indices: np.ndarray  # (nnz,) int64, ascending
    values: np.ndarray   # (nnz,) float32

    @classmethod
    def from_dict(cls, weights: dict) -> "SparseVector":
        if not weights:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        ids = np.fromiter((int(k) for k in weights), dtype=np.int64, count=len(weights))
        vals = np.fromiter((float(v) for v in weights.values()), dtype=np.float32, count=len(weights))
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], vals[order])

    def to_dict(self) -> dict[str, float]:
        """FlagEmbedding's form: ``str(token_id) -> weight``."""
        return {str(int(i)): float(v) for i, v in zip(self.indices, self.values)}

    def dot(self, other: "SparseVector") -> float:
        """Sum of weight products over shared token ids."""
        common, a, b = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[a].astype(np.float64), other.values[b].astype(np.float64))) if len(common) else 0.0

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class Hit:
    """One retrieved or reranked item."""

    id: str
    score: float
    rank: int
    text: str | None = None
