"""Semantic textual similarity (STS): cosine similarity of the embeddings of two sentences against human scores,
as MTEB computes it (Spearman and Pearson correlation; each sentence encoded on its own, no instruction).

    >>> from bgekit.eval.sts import evaluate_sts, read_sts   # doctest: +SKIP
    >>> evaluate_sts(Embedder("all-MiniLM-L6-v2"), read_sts("stsbenchmark-dev/dev.jsonl"))["cosine_spearman"]  # doctest: +SKIP
    0.8671...
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bgekit.errors import InputError


@dataclass
class STSPairs:
    """Sentence pairs with their gold similarity scores."""

    sentence1: list[str]
    sentence2: list[str]
    scores: list[float]


def read_sts(path: str, fields: tuple[str, str, str] = ("sentence1", "sentence2", "score")) -> STSPairs:
    """Pairs from a jsonl file with ``sentence1``, ``sentence2`` and ``score`` on every line (STS-B's layout).

    Raises:
        InputFileError: no such file. InputError: a line without the fields (file and line named), or fewer than
            2 pairs.
    """
    from bgekit.io import iter_jsonl

    a_name, b_name, s_name = fields
    pairs = STSPairs([], [], [])
    for n, obj in iter_jsonl(path):
        a, b, score = obj.get(a_name), obj.get(b_name), obj.get(s_name)
        if not isinstance(a, str) or not isinstance(b, str):
            raise InputError(f"{path}:{n}: expected string fields {a_name!r} and {b_name!r}")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InputError(f"{path}:{n}: expected a number in field {s_name!r}, got {score!r}")
        pairs.sentence1.append(a)
        pairs.sentence2.append(b)
        pairs.scores.append(float(score))
    if len(pairs.scores) < 2:
        raise InputError(f"{path}: {len(pairs.scores)} pairs; a correlation needs at least 2")
    return pairs


def evaluate_sts(model: Any, pairs: STSPairs, batch_size: int | None = None, show_progress: bool | None = None) -> dict:
    """``{"cosine_spearman", "cosine_pearson", "num_pairs"}`` for an embedder (anything with ``encode``).

    Each distinct sentence is encoded once with ``model.encode`` (plain, as MTEB does for STS).
    """
    import numpy as np

    from bgekit.eval.metrics import sts_spearman

    unique = list(dict.fromkeys(pairs.sentence1 + pairs.sentence2))
    row = {s: i for i, s in enumerate(unique)}
    emb = np.asarray(model.encode(unique, batch_size=batch_size, show_progress=show_progress))  # (U, D)
    a = emb[[row[s] for s in pairs.sentence1]]  # (N, D)
    b = emb[[row[s] for s in pairs.sentence2]]  # (N, D)
    return {**sts_spearman(a, b, pairs.scores), "num_pairs": len(pairs.scores)}
