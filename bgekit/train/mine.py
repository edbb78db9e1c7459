"""Hard-negative mining: retrieve candidates for every training query with an embedder, sample negatives.

What ``bgekit mine`` does (FlagEmbedding's ``hn_mine.py``, with the differences listed below):

1. the **pool** of candidate passages is ``--candidate_pool`` (jsonl with a "text" field, or a .txt file with one
   text per line) or else every ``pos`` and ``neg`` text of the input; duplicates are removed, keeping the first;
2. the pool and the queries are encoded with any bgekit embedder and searched exactly (FAISS inner product,
   :class:`bgekit.index.dense.DenseIndex`);
3. **range** ``A-B`` keeps the hits at 0-based positions ``A .. B-1`` of each query's ranking, as FlagEmbedding
   slices them: ``2-200`` skips the two best hits and uses ranks 3 to 200. A hit is never a negative when its
   text is one of the example's positives or the query itself;
4. ``negative_number`` negatives are sampled from those candidates without replacement. The randomness depends
   only on (seed, line), so the same seed gives the same file;
5. optional **false-negative filter**: a reranker scores the query's positives and the first
   ``candidates`` sampled candidates (default ``2 * negative_number``); a candidate is dropped when its score is
   too close to the positives' (see :data:`FILTER_MODES`, compared with the lowest positive score). The
   negatives are the first ``negative_number`` survivors in sampled order;
6. when the range yields too few, the rest is **filled with random pool texts** (never a positive or the query),
   as FlagEmbedding does; ``fill=False`` keeps fewer negatives instead.

Every other field of a line is kept; ``neg`` is replaced and a stale ``neg_scores`` is removed (run
``bgekit label`` afterwards for teacher scores). The output is written atomically.

Differences from FlagEmbedding on purpose: the pool keeps input order (the reference builds it from a Python
``set``, so its output changes from run to run even with a seed); the sampling is seeded; the embedder's own
pooling and lengths are the defaults (the reference forces ``cls`` pooling and 512 tokens); a malformed line
is an error naming its file and line.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from bgekit.errors import positive_int
from bgekit.train.data import Example
from bgekit.train.label import read_records, score_pairs, write_records

logger = logging.getLogger(__name__)


def _ratio(neg: np.ndarray, pos: float, threshold: float) -> np.ndarray:
    sig = 1.0 / (1.0 + np.exp(-np.asarray(neg, dtype=np.float64)))
    return sig > threshold * (1.0 / (1.0 + np.exp(-pos)))


# mode -> (candidate raw scores, lowest positive raw score, threshold) -> True where the candidate is dropped
FILTER_MODES: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "ratio": _ratio,  # sigmoid(candidate) > threshold * sigmoid(positive), e.g. 0.95
    "margin": lambda neg, pos, t: np.asarray(neg) > pos - t,  # raw candidate > raw positive - threshold
    "absolute": lambda neg, pos, t: np.asarray(neg) > t,  # raw candidate > threshold
}


def parse_range(text: str) -> tuple[int, int]:
    """``"2-200"`` -> (2, 200): hit positions 2..199 (0-based) of each ranking.

    Raises:
        ValueError: not two integers ``A-B`` with ``0 <= A < B``.
    """
    parts = str(text).split("-")
    try:
        start, end = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"range_for_sampling must look like '2-200' (two integers A-B), got {text!r}") from None
    if not 0 <= start < end:
        raise ValueError(f"range_for_sampling {text!r} must have 0 <= A < B")
    return start, end


@dataclass(frozen=True)
class FalseNegativeFilter:
    """Drop sampled candidates that a reranker scores too close to the positives.

    Attributes:
        reranker: any bgekit reranker (``compute_score`` or ``score``), one score per pair.
        mode: a key of :data:`FILTER_MODES`.
        threshold: the mode's threshold (ratio 0.95: drop candidates above 95% of the positive's sigmoid score).
        candidates: how many sampled candidates per query are scored (None: twice the negative number).
        batch_size: reranker batch size (None: the reranker's).
    """

    reranker: Any
    mode: str = "ratio"
    threshold: float = 0.95
    candidates: int | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in FILTER_MODES:
            raise ValueError(f"unknown false-negative filter mode {self.mode!r}; valid: {', '.join(FILTER_MODES)}")
        if self.candidates is not None and (isinstance(self.candidates, bool) or self.candidates < 1):
            raise ValueError(f"the filter's candidates must be a positive integer, got {self.candidates!r}")


@dataclass(frozen=True)
class MineConfig:
    """How negatives are sampled (FlagEmbedding's hn_mine options, plus a seed and the fill switch)."""

    range_for_sampling: tuple[int, int] = (10, 210)
    negative_number: int = 15
    seed: int = 42
    fill: bool = True
    search_batch_size: int = 64
    filter: FalseNegativeFilter | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.range_for_sampling, str):
            object.__setattr__(self, "range_for_sampling", parse_range(self.range_for_sampling))
        for name in ("negative_number", "search_batch_size"):
            positive_int(getattr(self, name), name)


def build_pool(examples: Sequence[Example], candidate_pool: Sequence[str] | None = None) -> list[str]:
    """The texts to search: ``candidate_pool``, else every pos and neg text; duplicates dropped, first kept."""
    texts = candidate_pool if candidate_pool is not None else [t for ex in examples for t in ex.pos + ex.neg]
    return list(dict.fromkeys(texts))


def candidates_for(example: Example, hits: Sequence[int], pool: Sequence[str]) -> list[int]:
    """Pool indices among ``hits`` (in rank order) that may be negatives: not a positive, not the query, no repeats."""
    banned = set(example.pos) | {example.query}
    out, seen = [], set()
    for i in hits:
        if i < 0 or i in seen or pool[i] in banned:
            continue
        seen.add(i)
        out.append(int(i))
    return out


def fill_random(example: Example, chosen: list[int], pool: Sequence[str], k: int, rng: random.Random) -> list[int]:
    """``k`` more random pool indices: never a positive, the query or an index already chosen."""
    banned = set(example.pos) | {example.query}
    taken = set(chosen)
    allowed = [i for i in range(len(pool)) if i not in taken and pool[i] not in banned]
    return rng.sample(allowed, min(k, len(allowed)))


def search(embedder: Any, queries: list[str], pool: list[str], k: int, batch_size: int = 64) -> np.ndarray:
    """Top-``k`` pool indices for every query, best first: (Q, k) int64."""
    from tqdm.auto import tqdm

    from bgekit.index.dense import DenseIndex

    p_vecs = embedder.encode_corpus(pool)
    q_vecs = embedder.encode_queries(queries)
    if isinstance(p_vecs, dict):  # FlagEmbedding-style M3 output
        p_vecs, q_vecs = p_vecs["dense_vecs"], q_vecs["dense_vecs"]
    index = DenseIndex.from_vectors(np.asarray(p_vecs, dtype=np.float32))
    k = min(k, len(index))
    parts = [index.search(np.asarray(q_vecs[i:i + batch_size], dtype=np.float32), k)[1]
             for i in tqdm(range(0, len(queries), batch_size), desc="Searching", disable=len(queries) <= 16 * batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def _sampled(examples: Sequence[Example], hits: np.ndarray, pool: list[str], config: MineConfig) -> list[list[int]]:
    """Per example: its candidates from the range, shuffled by the example's own seeded RNG."""
    start, end = config.range_for_sampling
    out = []
    for i, ex in enumerate(examples):
        cands = candidates_for(ex, hits[i, start:end].tolist(), pool)
        random.Random(f"{config.seed}:{i}").shuffle(cands)
        out.append(cands)
    return out


def _filtered(examples: Sequence[Example], sampled: list[list[int]], pool: list[str], config: MineConfig) -> list[list[int]]:
    """Candidates that survive the false-negative filter (only the first ``candidates`` of each are scored)."""
    flt = config.filter
    limit = flt.candidates or 2 * config.negative_number
    pairs: list[tuple[str, str]] = []
    for ex, cands in zip(examples, sampled):
        pairs += [(ex.query, p) for p in ex.pos] + [(ex.query, pool[j]) for j in cands[:limit]]
    scores = np.asarray(score_pairs(flt.reranker, pairs, flt.batch_size), dtype=np.float64)
    out, at = [], 0
    for ex, cands in zip(examples, sampled):
        n_pos, scored = len(ex.pos), cands[:limit]
        pos, neg = scores[at:at + n_pos], scores[at + n_pos:at + n_pos + len(scored)]
        at += n_pos + len(scored)
        drop = FILTER_MODES[flt.mode](neg, float(pos.min()), flt.threshold)
        out.append([j for j, d in zip(scored, drop) if not d])
    return out


def mine(examples: Sequence[Example], embedder: Any, config: MineConfig,
         candidate_pool: Sequence[str] | None = None) -> tuple[list[list[str]], dict[str, int]]:
    """Negatives for every example.

    Args:
        examples: validated training examples (queries and positives).
        embedder: any bgekit embedder (``encode_queries`` / ``encode_corpus``).
        config: the sampling settings.
        candidate_pool: texts to search (None: every pos and neg of ``examples``).

    Returns:
        ``(negatives, stats)``: one list of texts per example, and counts ("examples", "pool", "from_range",
        "filled", "dropped_by_filter", "short": examples left with fewer than negative_number).
    """
    pool = build_pool(examples, candidate_pool)
    if not pool:
        raise ValueError("the candidate pool is empty")
    start, end = config.range_for_sampling
    if start >= len(pool):
        logger.warning("range_for_sampling starts at %d but the pool has only %d texts: every negative will be random",
                       start, len(pool))
    hits = search(embedder, [ex.query for ex in examples], pool, end, config.search_batch_size)
    sampled = _sampled(examples, hits, pool, config)
    kept = _filtered(examples, sampled, pool, config) if config.filter is not None else sampled
    n = config.negative_number
    stats = {"examples": len(examples), "pool": len(pool), "from_range": 0, "filled": 0, "dropped_by_filter": 0, "short": 0}
    negatives = []
    for i, (ex, cands, survivors) in enumerate(zip(examples, sampled, kept)):
        chosen = survivors[:n]
        if config.filter is not None:
            scored = cands[:config.filter.candidates or 2 * n]
            stats["dropped_by_filter"] += len(scored) - len(survivors)
        stats["from_range"] += len(chosen)
        if len(chosen) < n and config.fill:
            extra = fill_random(ex, chosen, pool, n - len(chosen), random.Random(f"{config.seed}:fill:{i}"))
            stats["filled"] += len(extra)
            chosen = chosen + extra
        stats["short"] += len(chosen) < n
        negatives.append([pool[j] for j in chosen])
    return negatives, stats


def mine_file(embedder: Any, input_file: str, output_file: str, config: MineConfig,
              candidate_pool: Sequence[str] | None = None) -> dict[str, int]:
    """Mine negatives for every line of ``input_file`` and write ``output_file`` atomically.

    Args:
        embedder: any bgekit embedder.
        input_file: FlagEmbedding-format jsonl ("query", "pos" required; "neg" optional).
        output_file: where to write (may equal input_file).
        config: a :class:`MineConfig`.
        candidate_pool: texts to search (None: the input's pos and neg texts).

    Returns:
        The counts of :func:`mine`.

    Example:
        >>> from bgekit import load_embedder                                                 # doctest: +SKIP
        >>> mine_file(load_embedder("all-MiniLM-L6-v2"), "train.jsonl", "train_minedHN.jsonl",
        ...           MineConfig(range_for_sampling=(2, 200), negative_number=15))           # doctest: +SKIP
    """
    records = read_records(input_file)
    negatives, stats = mine([ex for _, ex in records], embedder, config, candidate_pool)
    out = []
    for (obj, _), negs in zip(records, negatives):
        obj = dict(obj)
        obj["neg"] = negs
        obj.pop("neg_scores", None)  # they scored the old negatives
        out.append(obj)
    write_records(output_file, out)
    logger.info("mined %s into %s", stats, output_file)
    return stats
