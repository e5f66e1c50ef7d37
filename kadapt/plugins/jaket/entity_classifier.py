"""KG-only downstream task: entity classification on a (possibly unseen) KG (JAKET §Entity Classification).

LM1 + GNN, no LM2: the entity memory (LM1 over descriptions, recomputed for the new KG) feeds the
composition GAT, and a linear layer classifies each entity's output. Semi-supervised transductive
setting: the labelled entities are split 20/20/60 into train/dev/test; the training part can be cut
to a fraction (the paper's 100/20/5% columns). Training samples neighbours (10 per hop); evaluation
reads every neighbour in one full-graph pass. Model selection by dev accuracy; test at the best dev.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.kg import CSR, KnowledgeGraph, NeighborSampler
from kadapt.plugins.jaket.gat import CompositionGAT


@dataclass
class EntitySplit:
    train: torch.Tensor
    dev: torch.Tensor
    test: torch.Tensor


def split_entities(labels: torch.Tensor, fractions: tuple[float, float, float] = (0.2, 0.2, 0.6),
                   train_fraction: float = 1.0, seed: int = 0) -> EntitySplit:
    """Seeded split of the labelled entities; ``train_fraction`` keeps that share of the train part."""
    labelled = torch.nonzero(labels >= 0).flatten()
    if labelled.numel() < 3:
        raise KadaptError(f"entity classification needs labelled entities; found {labelled.numel()}")
    order = labelled[torch.randperm(labelled.numel(), generator=torch.Generator().manual_seed(seed))]
    n_train, n_dev = int(fractions[0] * order.numel()), int(fractions[1] * order.numel())
    train = order[:n_train]
    keep = max(1, round(train_fraction * train.numel()))
    return EntitySplit(train[:keep], order[n_train:n_train + n_dev], order[n_train + n_dev:])


class EntityClassifier(nn.Module):
    """Linear classifier over GAT outputs (``gat=None``: over the input features alone)."""

    def __init__(self, hidden: int, num_classes: int, gat: CompositionGAT | None, dropout: float = 0.1):
        super().__init__()
        self.gat = gat
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor, relations: torch.Tensor, entities: torch.Tensor,
                sampler: NeighborSampler | None, generator: torch.Generator) -> torch.Tensor:
        """Training: logits of ``entities`` over a neighbour sample drawn around them."""
        if self.gat is None or sampler is None:
            x = features[entities]
        else:
            sub = sampler.sample(entities, generator)
            x = self.gat(features[sub.nodes], relations, sub.edge_index, sub.edge_type)[: entities.numel()]
        return self.classifier(self.dropout(x))

    def all_logits(self, features: torch.Tensor, relations: torch.Tensor, csr: CSR | None) -> torch.Tensor:
        """Inference: logits of every entity, the GAT reading all neighbours (one full-graph pass)."""
        x = features
        if self.gat is not None and csr is not None:
            targets = torch.repeat_interleave(torch.arange(csr.num_nodes), csr.degree())
            x = self.gat(features, relations, torch.stack([csr.neighbors, targets]), csr.relations)
        return self.classifier(x)


@torch.no_grad()
def accuracy(model: EntityClassifier, features, relations, entities, labels, csr: CSR | None) -> float:
    """Accuracy over ``entities`` with full neighbourhoods (no sampling noise at evaluation)."""
    was_training = model.training
    model.eval()
    logits = model.all_logits(features, relations, csr)
    model.train(was_training)
    return float((logits[entities].argmax(-1) == labels[entities]).float().mean()) if entities.numel() else 0.0


def train_entity_classifier(graph: KnowledgeGraph, features: torch.Tensor, relations: torch.Tensor,
                            labels: torch.Tensor, split: EntitySplit, gat: CompositionGAT | None, *,
                            steps: int = 400, evals: int = 8, lr: float = 1e-3, batch_size: int = 64,
                            fanouts: tuple[int, ...] = (10, 10), inverse: bool = True, seed: int = 0) -> dict:
    """Train (the GAT, when given, is fine-tuned too); returns dev/test accuracy at the best dev round."""
    torch.manual_seed(seed)
    num_classes = int(labels.max()) + 1
    model = EntityClassifier(features.shape[1], num_classes, copy.deepcopy(gat) if gat is not None else None)
    csr = graph.csr(inverse) if gat is not None else None
    sampler = NeighborSampler(csr, fanouts, seed) if csr is not None else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    every = max(1, math.ceil(steps / evals))
    best = (-1.0, None, 0)
    order, cursor = torch.randperm(split.train.numel(), generator=gen), 0
    model.train()
    for step in range(1, steps + 1):
        if cursor >= order.numel():
            order, cursor = torch.randperm(split.train.numel(), generator=gen), 0
        batch = split.train[order[cursor:cursor + batch_size]]
        cursor += batch_size
        loss = F.cross_entropy(model(features, relations, batch, sampler, gen), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % every == 0 or step == steps:
            dev = accuracy(model, features, relations, split.dev, labels, csr)
            if dev > best[0]:
                best = (dev, copy.deepcopy(model.state_dict()), step)
    model.load_state_dict(best[1])
    test = accuracy(model, features, relations, split.test, labels, csr)
    return {"dev_accuracy": best[0], "test_accuracy": test, "best_step": best[2], "train_entities": int(split.train.numel())}
