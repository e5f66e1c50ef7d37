"""Length-bucketed batch order: batches of similar lengths, so dynamic padding pads little.

:class:`LengthBucketSampler` yields example indices; the ``DataLoader`` cuts them into consecutive
batches of ``batch_size``. Per epoch (seeded by ``(seed, epoch)``, like ``EpochSampler``): shuffle all
indices, cut them into pools of ``pool_batches × batch_size``, sort each pool by length, cut the pool
into batches and shuffle the order of all batches. The order is a pure function of (seed, epoch), so
resume (skip the first N batches) and ``split_batches`` DDP (every process sees the same global batch)
work unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[int]):
    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50,
                 shuffle: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size, self.seed, self.pool_batches, self.shuffle = batch_size, seed, pool_batches, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches (lists of example indices)."""
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: (self.lengths[i], i))
            return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=gen).tolist()
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = sorted(order[start:start + pool], key=lambda i: self.lengths[i])
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        # a short batch (from the tail of a pool) is moved last, so only the final batch is ever short
        full = [b for b in batches if len(b) == self.batch_size]
        short = [i for b in batches if len(b) < self.batch_size for i in b]
        full = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()]
        return full + [short[i:i + self.batch_size] for i in range(0, len(short), self.batch_size)]

    def __iter__(self):
        return iter([i for batch in self.batches() for i in batch])

    def __len__(self) -> int:
        return len(self.lengths)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions when each batch is padded to its longest example."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return 1.0 - real / padded if padded else 0.0
