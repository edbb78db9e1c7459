"""How a change (add, delete, upsert, compact) becomes at most one new segment plus a new generation.

Deletes become tombstones: the generation records each segment's deleted local rows, and the segment's files
are not touched. Adds write the new documents as a new segment. A merge policy keeps the number of segments
logarithmic in the index size, and the cost of a change proportional to the change, not to the index:

- the new documents are merged with the trailing segments that are small (fewer than ``small_segment`` live
  rows) or not much larger than what is being written (``merge_factor`` times): segment sizes then fall
  geometrically from the first segment to the last, and adding 1,000 documents to an index of 1,000,000 (or
  10,000,000) writes about 1,000 rows;
- a segment whose deleted share passes ``max_deleted``, or a small one with deletions, is rewritten without
  them;
- ``compact`` rewrites everything as one segment (approximate FAISS indexes are trained again).

Segments are only ever replaced by a contiguous run, so rows keep their insertion order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bgekit.index import generation as G
from bgekit.index.segment import SegmentWriter


@dataclass(frozen=True)
class MergePolicy:
    """When a change rewrites existing segments (see the module docstring)."""

    small_segment: int = 8192
    merge_factor: float = 8.0
    max_deleted: float = 0.3


POLICY = MergePolicy()
SETTINGS = ("model", "outputs", "dense")


def rewrite_range(parts: list[tuple[Any, np.ndarray]], deleted: list[np.ndarray], n_new: int, compact: bool,
                  policy: MergePolicy) -> tuple[int, int]:
    """The run [lo, hi) of segments this change rewrites into its new segment (lo == hi == len: none)."""
    n = len(parts)
    live = [seg.rows - len(d) for (seg, _), d in zip(parts, deleted)]
    if compact or any(getattr(seg, "legacy", False) for seg, _ in parts):
        return 0, n
    need = [i for i in range(n) if len(deleted[i]) and (live[i] < policy.small_segment
                                                         or len(deleted[i]) > policy.max_deleted * parts[i][0].rows)]
    lo, hi = (min(need), max(need) + 1) if need else (n, n)
    if n_new:
        start, tail = n, n_new
        while start > 0 and (live[start - 1] < policy.small_segment or tail * policy.merge_factor > live[start - 1]):
            start -= 1
            tail += live[start]
        lo, hi = min(lo, start), n
    return lo, hi


def apply(store: Any, drop: dict[int, np.ndarray] | None = None, add: Callable[[SegmentWriter], None] | None = None,
          n_new: int = 0, compact: bool = False) -> str:
    """Commit one change to ``store`` (open on the live generation; the caller holds the write lock).

    Args:
        store: the :class:`~bgekit.index.store.IndexStore`.
        drop: part -> local rows to delete.
        add: called with the new segment's writer to append the new documents (encoding as it goes).
        n_new: how many documents ``add`` appends.
        compact: rewrite every segment into one.

    Returns:
        The new generation's name.
    """
    parts = store.layout.parts
    drop = drop or {}
    deleted = [np.union1d(d, np.asarray(drop.get(i, []), dtype=np.int64)).astype(np.int64) for i, (_, d) in enumerate(parts)]
    lo, hi = rewrite_range(parts, deleted, n_new if add else 0, compact, POLICY)
    root, number = store.path, G.next_number(store.path, store.generation)
    G.collect_garbage(root, store.generation)
    settings = {k: store.manifest[k] for k in SETTINGS}
    entries = [{"name": seg.name, "rows": seg.rows, "deleted": len(d)} for (seg, _), d in zip(parts, deleted)]
    written = []
    if lo < hi or add is not None:
        with SegmentWriter(root, number, settings) as writer:
            for i in range(lo, hi):
                writer.copy(parts[i][0], deleted[i])
            if add is not None:
                add(writer)
            entry = writer.commit(None if compact else _template(parts))
        others = len(entries) - (hi - lo)
        written = [entry] if entry["rows"] or not others else []
    entries[lo:hi] = written
    tombstones = {e["name"]: deleted[i] for i, e in enumerate(entries[:lo]) if e["deleted"]}
    tombstones.update({e["name"]: deleted[hi + j] for j, e in enumerate(entries[lo + len(written):]) if e["deleted"]})
    return G.commit_generation(root, number, {**settings, "segments": entries}, tombstones)


def _template(parts: list[tuple[Any, np.ndarray]]) -> Any:
    """The newest trained, empty FAISS index among the segments (IVF...: new segments reuse its training)."""
    for seg, _ in reversed(parts):
        if seg.template is not None:
            return seg.template
    return None
