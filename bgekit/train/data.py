"""Training data in FlagEmbedding's jsonl format, turned into groups of one query, one positive and negatives.

Each line of a ``.jsonl`` (or ``.json``) file is one example::

    {"query": str, "pos": [str, ...], "neg": [str, ...],            # pos: at least one
     "pos_scores": [float, ...], "neg_scores": [float, ...],        # optional teacher scores, one per text
     "prompt": str, "type": str, "category": str}                   # optional

A malformed line raises ValueError naming its file and line; so does an example without positives.

Groups. Every time an example is drawn it becomes a :class:`TrainGroup`: the query, one positive chosen at
random, then ``group_size - 1`` negatives. With enough negatives they are sampled without replacement. With
too few, they are **resampled in passes**: each pass uses every negative once, in a fresh random order, and
passes repeat until the group is full (3 negatives for 7 slots: each appears twice or three times). An
example with no negatives at all is an error when ``group_size > 1``. The randomness of a draw depends only on
(seed, epoch, example index), so a resumed run sees exactly the groups an uninterrupted run would.

Sources. Every file is one source. A file whose name (without extension) or folder ends in
``no_in_batch_neg`` is marked: its batches use no in-batch negatives (classification / clustering data,
where another query's positive is often also yours). A folder is searched recursively (FlagEmbedding's
example-data root, with one subfolder per task, works as one path). Files in one folder smaller than ``small_threshold``
are merged into one source, dropped if it has fewer than ``drop_threshold`` examples (as in FlagEmbedding).

Batches (:class:`~bgekit.train.sampler.GroupBatchSampler`). Either examples from all sources are shuffled together, or, with
``same_source=True`` (FlagEmbedding's ``same_dataset_within_batch``), every global batch comes from one
source. Then the ``type`` of its examples also counts: ``only_1neg`` uses groups of 2, ``symmetric_class``
at most ``len(neg) + 1``, and ``symmetric_*`` sources use half the batch size. Shared by embedder and
reranker training.
"""
from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from typing import Any, Sequence

from bgekit.errors import positive_int, InputError
from bgekit.io import iter_jsonl

import torch

logger = logging.getLogger(__name__)

NO_IN_BATCH_NEG = "no_in_batch_neg"
EXTENSIONS = (".jsonl", ".json")


@dataclass(frozen=True)
class Example:
    """One validated line of a training file. ``where`` is "file:line" for error messages."""

    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    pos_scores: tuple[float, ...] | None = None
    neg_scores: tuple[float, ...] | None = None
    prompt: str | None = None
    type: str | None = None
    category: str | None = None
    where: str = ""


@dataclass(frozen=True)
class TrainGroup:
    """What one drawn example gives the collator: ``passages[0]`` is the positive."""

    query: str
    passages: list[str]
    scores: list[float] | None
    prompt: str | None
    type: str | None
    category: str | None
    no_in_batch_neg: bool


@dataclass
class Source:
    """The examples of one file (or of merged small files) and whether in-batch negatives are off."""

    name: str
    examples: list[Example]
    no_in_batch_neg: bool = False


def _str_list(obj: dict, key: str, where: str, required: bool) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: the example has no positives ('{key}' is missing); every example needs at least one")
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InputError(f"{where}: '{key}' must be a list of strings, got {json.dumps(value)[:80]}")
    if required and not value:
        raise InputError(f"{where}: the example has no positives ('{key}' is empty); every example needs at least one")
    return tuple(value)


def _scores(obj: dict, key: str, texts: tuple[str, ...], where: str, required: bool) -> tuple[float, ...] | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: knowledge distillation needs '{key}' (one teacher score per text), but it is missing")
        return None
    if not isinstance(value, list) or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in value):
        raise InputError(f"{where}: '{key}' must be a list of numbers, got {json.dumps(value)[:80]}")
    if len(value) != len(texts):
        raise InputError(f"{where}: '{key}' has {len(value)} scores for {len(texts)} texts")
    return tuple(float(s) for s in value)


def parse_example(obj: Any, where: str, need_scores: bool = False) -> Example:
    """Validate one decoded line. ``need_scores``: pos_scores / neg_scores must be present."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object with 'query' and 'pos', got {type(obj).__name__}")
    query = obj.get("query")
    if not isinstance(query, str):
        raise InputError(f"{where}: 'query' must be a string, got {json.dumps(query)[:80]}")
    pos = _str_list(obj, "pos", where, required=True)
    neg = _str_list(obj, "neg", where, required=False)
    optional = {}
    for key in ("prompt", "type", "category"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: '{key}' must be a string, got {json.dumps(value)[:80]}")
        optional[key] = value
    return Example(query, pos, neg, _scores(obj, "pos_scores", pos, where, need_scores),
                   _scores(obj, "neg_scores", neg, where, need_scores), where=where, **optional)


def read_jsonl(path: str, need_scores: bool = False) -> list[Example]:
    """All examples of one file; blank lines are skipped.

    Raises:
        ValueError: a line that is not valid JSON or not a valid example (message names file and line).
    """
    return [parse_example(obj, f"{path}:{n}", need_scores) for n, obj in iter_jsonl(path, objects_only=False)]


def _marked_folder(folder: str) -> bool:
    return os.path.basename(os.path.abspath(folder)).endswith(NO_IN_BATCH_NEG)


def _marked(path: str) -> bool:
    """A file is marked by its own name (without extension) or by its folder's name."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.endswith(NO_IN_BATCH_NEG) or _marked_folder(os.path.dirname(os.path.abspath(path)))


def _files(path: str) -> list[str]:
    """A file, or every .jsonl / .json file under a folder and its subfolders (sorted by path)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(root, f) for root, dirs, names in os.walk(path, followlinks=True)
                       for f in names if f.endswith(EXTENSIONS) and not f.startswith("."))
        if not files:
            raise ValueError(f"training data folder {path!r} holds no .jsonl / .json files (searched recursively)")
        return files
    if not os.path.exists(path):
        raise FileNotFoundError(f"training data {path!r} does not exist")
    if not path.endswith(EXTENSIONS):
        raise ValueError(f"training data {path!r} is not a .jsonl / .json file or a folder of them")
    return [path]


def load_sources(paths: Sequence[str], need_scores: bool = False, max_examples_per_file: int | None = None,
                 small_threshold: int = 0, drop_threshold: int = 0, seed: int = 42) -> list[Source]:
    """Read every training file (files, or folders of files) into sources.

    Args:
        paths: files or folders (every .jsonl / .json file under a folder, subfolders included, in path order;
            FlagEmbedding's example-data root works as one path).
        need_scores: every example must carry pos_scores / neg_scores (knowledge distillation).
        max_examples_per_file: keep a random subset (seeded) of larger files.
        small_threshold / drop_threshold: merge a folder's files smaller than small_threshold into one source;
            drop that merged source if it has fewer than drop_threshold examples.
        seed: for the subsets.

    Raises:
        FileNotFoundError / ValueError: missing paths, wrong extensions, malformed lines, no examples at all.
    """
    if isinstance(paths, str):
        paths = [paths]
    sources: list[Source] = []
    for path in paths:
        small: dict[str, Source] = {}  # folder -> its merged small files
        for file in _files(path):
            examples = read_jsonl(file, need_scores)
            if max_examples_per_file is not None and len(examples) > max_examples_per_file:
                examples = random.Random(f"{seed}:{file}").sample(examples, max_examples_per_file)
            if not examples:
                continue
            if os.path.isdir(path) and len(examples) < small_threshold:
                folder = os.path.dirname(file)
                merged = small.setdefault(folder, Source(f"{folder} (merged small files)", [], _marked_folder(folder)))
                merged.examples.extend(examples)
            else:
                sources.append(Source(file, examples, _marked(file)))
        sources.extend(s for s in small.values() if len(s.examples) >= drop_threshold)
    if not sources:
        raise ValueError(f"no training examples found in {list(paths)}")
    for s in sources:
        logger.info("training data %s: %d examples%s", s.name, len(s.examples), " (no in-batch negatives)" if s.no_in_batch_neg else "")
    return sources


def negative_indices(n_neg: int, k: int, rng: random.Random) -> list[int]:
    """``k`` negative positions out of ``n_neg``: without replacement when possible, else in repeated passes."""
    if k <= n_neg:
        return rng.sample(range(n_neg), k)
    out: list[int] = []
    while len(out) < k:
        order = list(range(n_neg))
        rng.shuffle(order)
        out.extend(order)
    return out[:k]


def _shuffle_text(text: str, ratio: float, rng: random.Random) -> str:
    """FlagEmbedding's shuffle_ratio augmentation: a long text is cut in three and the pieces shuffled."""
    if ratio <= 0 or len(text) <= 100 or rng.random() >= ratio:
        return text
    size = len(text) // 3 + 1
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    rng.shuffle(parts)
    return " ".join(parts)


class GroupDataset(torch.utils.data.Dataset):
    """All sources' examples; item ``(index, epoch, group_size)`` is a freshly drawn :class:`TrainGroup`.

    Args:
        sources: from :func:`load_sources`.
        group_size: passages per query (one positive + negatives); FlagEmbedding's train_group_size.
        seed: the draws depend only on (seed, epoch, index).
        use_scores: keep teacher scores (knowledge distillation).
        shuffle_ratio: probability of the positive-shuffling augmentation.
    """

    def __init__(self, sources: list[Source], group_size: int, seed: int = 42, use_scores: bool = False,
                 shuffle_ratio: float = 0.0):
        positive_int(group_size, "train_group_size")
        self.sources = sources
        self.group_size = group_size
        self.seed = seed
        self.use_scores = use_scores
        self.shuffle_ratio = shuffle_ratio
        self.examples = [e for s in sources for e in s.examples]
        self.source_index = [i for i, s in enumerate(sources) for _ in s.examples]
        if group_size > 1:
            empty = next((e for e in self.examples if not e.neg), None)
            if empty is not None:
                raise InputError(f"{empty.where}: the example has no negatives, but train_group_size={group_size} needs "
                                 f"{group_size - 1}; add 'neg' texts (e.g. with `bgekit mine`) or use train_group_size=1")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key) -> TrainGroup:
        index, epoch, group_size = (key, 0, self.group_size) if isinstance(key, int) else key
        ex = self.examples[index]
        rng = random.Random(f"{self.seed}:{epoch}:{index}")
        p = rng.randrange(len(ex.pos))
        negs = negative_indices(len(ex.neg), group_size - 1, rng)
        passages = [_shuffle_text(ex.pos[p], self.shuffle_ratio, rng)] + [ex.neg[j] for j in negs]
        scores = None
        if self.use_scores:
            if ex.pos_scores is None or ex.neg_scores is None:
                raise InputError(f"{ex.where}: knowledge distillation needs pos_scores and neg_scores")
            scores = [ex.pos_scores[p]] + [ex.neg_scores[j] for j in negs]
        return TrainGroup(ex.query, passages, scores, ex.prompt, ex.type, ex.category,
                          self.sources[self.source_index[index]].no_in_batch_neg)

    def batch_group_size(self, indices: Sequence[int]) -> int:
        """The group size of a same-source batch, from its examples' ``type`` (see module docstring)."""
        types = {self.examples[i].type for i in indices}
        if "only_1neg" in types:
            return min(2, self.group_size)
        if "symmetric_class" in types:
            return min(self.group_size, 1 + min(len(self.examples[i].neg) for i in indices))
        return self.group_size
