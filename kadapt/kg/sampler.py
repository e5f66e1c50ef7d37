"""Uniform multi-hop neighbour sampling over a CSR index, in plain torch (no compiled extensions).

For each hop, every frontier entity keeps ``fanout`` of its neighbours drawn uniformly without
replacement (all of them when it has fewer); the next frontier is the entities not seen before.
Everything is vectorised: one random key per candidate edge, one sort, a rank-within-entity cut.
The result is a union subgraph whose first ``num_roots`` nodes are the roots, in the given order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kadapt.core.errors import KadaptError
from kadapt.kg.graph import CSR


@dataclass
class SampledSubgraph:
    """Nodes (global entity indices, roots first) and sampled edges ``neighbour → entity`` (local)."""

    nodes: torch.Tensor
    edge_index: torch.Tensor  # (2, E): row 0 = source (neighbour u), row 1 = target (entity v)
    edge_type: torch.Tensor  # (E,) relation index (0..2P-1 with inverse relations)
    num_roots: int

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.numel())


def segment_ranges(indptr: torch.Tensor, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``nodes``: (segment id per candidate edge, CSR position per candidate edge)."""
    starts = indptr[nodes]
    degree = indptr[nodes + 1] - starts
    segment = torch.repeat_interleave(torch.arange(nodes.numel()), degree)
    first = torch.cumsum(degree, 0) - degree
    offset = torch.arange(segment.numel()) - first[segment]
    return segment, starts[segment] + offset


def sample_per_node(indptr: torch.Tensor, nodes: torch.Tensor, fanout: int,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``fanout`` CSR positions per node, uniformly without replacement: (segment id, position)."""
    segment, position = segment_ranges(indptr, nodes)
    if segment.numel() == 0:
        return segment, position
    key = segment.double() + torch.rand(segment.numel(), generator=generator, dtype=torch.float64)
    order = torch.argsort(key)
    segment, position = segment[order], position[order]
    degree = indptr[nodes + 1] - indptr[nodes]
    first = torch.cumsum(degree, 0) - degree
    rank = torch.arange(segment.numel()) - first[segment]
    keep = rank < fanout
    return segment[keep], position[keep]


class NeighborSampler:
    """Seeded uniform neighbour sampler (GraphSAGE-style minibatches) over one CSR index."""

    def __init__(self, csr: CSR, fanouts: tuple[int, ...] = (10, 10), seed: int = 0):
        if csr.num_nodes == 0:
            raise KadaptError("cannot sample neighbours in a graph with no entities")
        if any(f < 0 for f in fanouts):
            raise KadaptError(f"fanouts must be >= 0, got {list(fanouts)}")
        self.csr = csr
        self.fanouts = tuple(fanouts)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, roots: torch.Tensor, generator: torch.Generator | None = None) -> SampledSubgraph:
        """Multi-hop sample around ``roots`` (distinct global entity indices)."""
        roots = torch.as_tensor(roots, dtype=torch.long).flatten()
        n = self.csr.num_nodes
        if roots.numel() and (int(roots.min()) < 0 or int(roots.max()) >= n):
            raise KadaptError(f"root entity index outside 0..{n - 1}")
        if roots.unique().numel() != roots.numel():
            raise KadaptError("roots must be distinct entity indices")
        generator = generator or self.generator
        local = torch.full((n,), -1, dtype=torch.long)
        local[roots] = torch.arange(roots.numel())
        nodes, frontier = [roots], roots
        count = roots.numel()
        sources, targets, types = [], [], []
        for fanout in self.fanouts:
            if frontier.numel() == 0:
                break
            segment, position = sample_per_node(self.csr.indptr, frontier, fanout, generator)
            neighbour = self.csr.neighbors[position]
            new = torch.unique(neighbour[local[neighbour] < 0])
            local[new] = torch.arange(count, count + new.numel())
            count += new.numel()
            nodes.append(new)
            sources.append(local[neighbour])
            targets.append(local[frontier[segment]])
            types.append(self.csr.relations[position])
            frontier = new
        edge_index = torch.stack([torch.cat(sources), torch.cat(targets)]) if sources else torch.zeros(2, 0, dtype=torch.long)
        edge_type = torch.cat(types) if types else torch.zeros(0, dtype=torch.long)
        return SampledSubgraph(torch.cat(nodes), edge_index, edge_type, int(roots.numel()))

    def sample_neighbors(self, entities: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(len(entities), k) neighbour indices, ``-1`` where an entity has fewer than ``k``."""
        entities = torch.as_tensor(entities, dtype=torch.long).flatten()
        segment, position = sample_per_node(self.csr.indptr, entities, k, generator or self.generator)
        out = torch.full((entities.numel(), k), -1, dtype=torch.long)
        if segment.numel():
            degree = (self.csr.indptr[entities + 1] - self.csr.indptr[entities]).clamp(max=k)
            first = torch.cumsum(degree, 0) - degree
            slot = torch.arange(segment.numel()) - first[segment]
            out[segment, slot] = self.csr.neighbors[position]
        return out
