"""Length-bucketed batch order: a seeded permutation of every example, less padding than random."""
from __future__ import annotations

import random

import torch

from kadapt.data.bucketing import LengthBucketSampler, padding_fraction
from kadapt.runs.loop import EpochSampler


def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(5, 120) for _ in range(n)]


def test_every_example_once_and_only_the_last_batch_short():
    lengths = _lengths(1003)
    sampler = LengthBucketSampler(lengths, batch_size=16, seed=3, pool_batches=10)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(1003)) == sorted(sampler)
    assert all(len(b) == 16 for b in batches[:-1]) and len(batches[-1]) == 1003 % 16


def test_order_is_a_pure_function_of_seed_and_epoch():
    lengths = _lengths()
    a, b = LengthBucketSampler(lengths, 8, seed=1), LengthBucketSampler(lengths, 8, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LengthBucketSampler(lengths, 8, seed=2)) != list(LengthBucketSampler(lengths, 8, seed=1))


def test_bucketing_pads_far_less_than_a_random_order():
    lengths, size = _lengths(), 32
    random_order = list(EpochSampler(len(lengths), seed=1))
    random_batches = [random_order[i:i + size] for i in range(0, len(lengths), size)]
    bucketed = LengthBucketSampler(lengths, size, seed=1).batches()
    assert padding_fraction(lengths, random_batches) > 0.35
    assert padding_fraction(lengths, bucketed) < 0.05
    assert padding_fraction([3, 3], [[0, 1]]) == 0.0
    assert torch.tensor(padding_fraction([2, 4], [[0, 1]])).item() == 0.25
