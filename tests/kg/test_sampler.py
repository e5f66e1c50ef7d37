"""Uniform CSR neighbour sampling: fan-out limits, real edges only, seeded, no replacement."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.kg import KnowledgeGraph, NeighborSampler


def star(n_leaves: int = 30) -> KnowledgeGraph:
    entities = [(f"e{i}", None, None) for i in range(n_leaves + 2)]
    triples = [(0, 0, i) for i in range(1, n_leaves + 1)] + [(1, 0, n_leaves + 1)]
    return KnowledgeGraph.build(entities, [("r", None, None)], triples)


def test_fanout_limits_and_real_edges():
    g = star()
    sampler = NeighborSampler(g.csr(), (10, 10), seed=0)
    sub = sampler.sample(torch.tensor([0, 31]))
    assert sub.nodes[:2].tolist() == [0, 31] and sub.num_roots == 2
    src, dst = sub.nodes[sub.edge_index[0]], sub.nodes[sub.edge_index[1]]
    hop1 = dst == 0
    assert int(hop1.sum()) == 10  # hub: 10 of its 30 neighbours, without replacement
    assert src[hop1].unique().numel() == 10
    edges = {(int(h), int(t)) for h, _, t in g.triples.tolist()}
    edges |= {(t, h) for h, t in edges}
    assert all((int(v), int(u)) in edges for u, v in zip(src, dst))  # every sampled edge is in the KG
    # a node with fewer neighbours than the fan-out keeps all of them
    assert sorted(src[dst == 31].tolist()) == [1]


def test_seeded_and_different_across_draws():
    g = star()
    a = NeighborSampler(g.csr(), (10,), seed=3).sample(torch.tensor([0]))
    b = NeighborSampler(g.csr(), (10,), seed=3).sample(torch.tensor([0]))
    assert torch.equal(a.nodes, b.nodes) and torch.equal(a.edge_index, b.edge_index)
    c = NeighborSampler(g.csr(), (10,), seed=4).sample(torch.tensor([0]))
    assert not torch.equal(a.nodes, c.nodes)


def test_uniform_choice():
    g = star(20)
    sampler = NeighborSampler(g.csr(inverse=False), (5,), seed=0)
    counts = torch.zeros(22)
    for _ in range(400):
        sub = sampler.sample(torch.tensor([0]))
        counts[sub.nodes[1:]] += 1
    picked = counts[1:21]
    assert picked.sum() == 2000 and picked.min() > 60 and picked.max() < 140  # expectation 100 each


def test_sample_neighbors_pads_and_bad_roots():
    g = star(3)
    sampler = NeighborSampler(g.csr(inverse=False), (2,), seed=0)
    out = sampler.sample_neighbors(torch.tensor([0, 1, 4]), 4)
    assert sorted(out[0].tolist()) == [-1, 1, 2, 3] and out[1].tolist() == [4, -1, -1, -1] and out[2].tolist() == [-1] * 4
    with pytest.raises(KadaptError, match="distinct"):
        sampler.sample(torch.tensor([0, 0]))
    with pytest.raises(KadaptError, match="outside"):
        sampler.sample(torch.tensor([99]))
