"""Batches of training groups: mixed or same-source, reshuffled per epoch, split across processes.

Every batch is a list of dataset keys ``(index, epoch, group_size)`` (see :class:`bgekit.train.data.GroupDataset`),
so what a step trains on depends only on the seed, the epoch and the step: a resumed run replays exactly the
batches an uninterrupted one would.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Iterator

import torch
from bgekit.errors import positive_int

if TYPE_CHECKING:
    from bgekit.train.data import GroupDataset


class GroupBatchSampler(torch.utils.data.Sampler):
    """Per-process batches of dataset keys ``(index, epoch, group_size)``, reshuffled every epoch.

    It yields ``world_size`` consecutive batches per global step; Accelerate deals batch ``i`` to process
    ``i % world_size``. Call :meth:`set_epoch` before each epoch (the trainer does).

    Args:
        dataset: the :class:`GroupDataset`.
        batch_size: examples per process and step.
        same_source: every global batch comes from one source (and its type rules apply).
        seed: shuffling seed.
        drop_last: drop the last incomplete batch (always done with same_source, as in FlagEmbedding).
        world_size: number of training processes.
    """

    def __init__(self, dataset: GroupDataset, batch_size: int, same_source: bool = False, seed: int = 42,
                 drop_last: bool = False, world_size: int = 1):
        positive_int(batch_size, "batch size")
        self.dataset = dataset
        self.batch_size = batch_size
        self.same_source = same_source
        self.seed = seed
        self.drop_last = drop_last
        self.world_size = max(1, world_size)
        self.epoch = 0
        self._cache: tuple[int, list[list[tuple[int, int, int]]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        return iter(self._batches())

    def _batches(self) -> list[list[tuple[int, int, int]]]:
        if self._cache is None or self._cache[0] != self.epoch:
            rng = random.Random(f"{self.seed}:batches:{self.epoch}")
            chunks = self._same_source_chunks(rng) if self.same_source else self._mixed_chunks(rng)
            batches = [[(i, self.epoch, gs) for i in part] for gs, chunk in chunks for part in self._split(chunk)]
            self._cache = (self.epoch, batches)
        return self._cache[1]

    def _split(self, chunk: list[int]) -> list[list[int]]:
        """A global chunk -> ``world_size`` consecutive per-process parts (sizes differ by at most one)."""
        q, r = divmod(len(chunk), self.world_size)
        bounds = [0]
        for rank in range(self.world_size):
            bounds.append(bounds[-1] + q + (rank < r))
        return [chunk[a:b] for a, b in zip(bounds, bounds[1:])]

    def _mixed_chunks(self, rng: random.Random) -> list[tuple[int, list[int]]]:
        order = list(range(len(self.dataset)))
        rng.shuffle(order)
        step = self.batch_size * self.world_size
        chunks = [order[i:i + step] for i in range(0, len(order), step)]
        if chunks and len(chunks[-1]) < step and (self.drop_last or len(chunks[-1]) < self.world_size):
            chunks.pop()
        return [(self.dataset.group_size, c) for c in chunks]

    def _same_source_chunks(self, rng: random.Random) -> list[tuple[int, list[int]]]:
        chunks, start = [], 0
        for source in self.dataset.sources:
            ids = list(range(start, start + len(source.examples)))
            start += len(source.examples)
            symmetric = any((e.type or "").startswith("symmetric") for e in source.examples[:1])
            step = max(1, self.batch_size // 2 if symmetric else self.batch_size) * self.world_size
            rng.shuffle(ids)
            for i in range(0, len(ids) - step + 1, step):
                chunk = ids[i:i + step]
                chunks.append((self.dataset.batch_group_size(chunk), chunk))
        if not chunks:
            raise ValueError(f"same_dataset_within_batch: no source has a full batch of {self.batch_size * self.world_size} "
                             "examples; lower the batch size")
        rng.shuffle(chunks)
        return chunks
