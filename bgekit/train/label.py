"""Teacher scores for distillation: ``bgekit label`` adds a reranker's ``pos_scores`` / ``neg_scores`` to jsonl data.

Every line keeps all its fields; ``pos_scores`` and ``neg_scores`` (one float per text of ``pos`` / ``neg``,
the reranker's raw scores unless ``normalize``) are added or replaced. The output is written atomically: a
failed or interrupted run never leaves a half-written file under the output name.

This module also holds the jsonl record helpers that ``bgekit mine`` shares: :func:`read_records` (every line
validated with :func:`bgekit.train.data.parse_example`, so a malformed line names its file and line) and
:func:`write_records`.

Example:
    >>> from bgekit import FlagAutoReranker                                            # doctest: +SKIP
    >>> rr = FlagAutoReranker.from_finetuned("BAAI/bge-reranker-v2-m3")                # doctest: +SKIP
    >>> label_file(rr, "train_minedHN.jsonl", "train_scored.jsonl")                    # doctest: +SKIP
    {'examples': 100, 'pairs': 1600}
"""
from __future__ import annotations

import json
import logging
from typing import Any, Sequence

from bgekit.errors import InputError
from bgekit.io import iter_jsonl

from bgekit.train.data import Example, parse_example

logger = logging.getLogger(__name__)


def read_records(path: str) -> list[tuple[dict, Example]]:
    """Every non-blank line of a FlagEmbedding-format jsonl file: (the decoded object, its validated Example).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not JSON or not a valid example (no positives, wrong types), naming the file
            and line.
    """
    records = [(obj, parse_example(obj, f"{path}:{n}")) for n, obj in iter_jsonl(path, objects_only=False)]
    if not records:
        raise InputError(f"{path} holds no examples")
    return records


def write_records(path: str, objects: Sequence[dict]) -> None:
    """One JSON object per line (UTF-8, not ASCII-escaped), written atomically."""
    from bgekit.io import atomic_open

    with atomic_open(path) as f:
        for obj in objects:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")


def score_pairs(reranker: Any, pairs: list[tuple[str, str]], batch_size: int | None = None) -> list[float]:
    """Raw scores of (query, passage) pairs with any bgekit reranker (FlagEmbedding-style ``compute_score`` or the
    native ``score``). A layerwise reranker must be set to one cutoff layer."""
    if not pairs:
        return []
    if hasattr(reranker, "compute_score"):
        scores = reranker.compute_score(pairs, batch_size=batch_size)
    else:
        scores = reranker.score(pairs, batch_size=batch_size)
    if scores and isinstance(scores[0], list):
        raise ValueError("the reranker returned scores for several layers; give it one cutoff layer")
    if len(scores) != len(pairs):
        raise RuntimeError(f"the reranker returned {len(scores)} scores for {len(pairs)} pairs")
    return [float(s) for s in scores]


def label_records(reranker: Any, records: list[tuple[dict, Example]], batch_size: int | None = None) -> list[dict]:
    """Copies of the records' objects with ``pos_scores`` and ``neg_scores`` from ``reranker``.

    All pairs of all records are scored in one call, so the reranker batches them by length.
    """
    pairs = [(ex.query, p) for _, ex in records for p in ex.pos + ex.neg]
    scores = score_pairs(reranker, pairs, batch_size)
    out, start = [], 0
    for obj, ex in records:
        n_pos, n_neg = len(ex.pos), len(ex.neg)
        labelled = dict(obj)
        labelled["pos_scores"] = scores[start:start + n_pos]
        labelled["neg_scores"] = scores[start + n_pos:start + n_pos + n_neg]
        if "neg" not in labelled:
            labelled["neg"] = []
        start += n_pos + n_neg
        out.append(labelled)
    return out


def label_file(reranker: Any, input_file: str, output_file: str, batch_size: int | None = None) -> dict[str, int]:
    """Read ``input_file``, add teacher scores, write ``output_file`` atomically.

    Args:
        reranker: a loaded bgekit reranker (e.g. from ``FlagAutoReranker.from_finetuned``).
        input_file / output_file: FlagEmbedding-format jsonl (they may be the same path).
        batch_size: scoring batch size (None: the reranker's).

    Returns:
        ``{"examples": n, "pairs": m}``.
    """
    records = read_records(input_file)
    labelled = label_records(reranker, records, batch_size)
    write_records(output_file, labelled)
    pairs = sum(len(ex.pos) + len(ex.neg) for _, ex in records)
    logger.info("labelled %d examples (%d pairs) into %s", len(records), pairs, output_file)
    return {"examples": len(records), "pairs": pairs}
