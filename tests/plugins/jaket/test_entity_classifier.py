"""KG-only entity classification (LM1 + GNN, no LM2): splits, training, full-graph evaluation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.kg import read_kg
from kadapt.plugins.jaket.entity_classifier import (
    split_entities,
    train_entity_classifier,
)
from kadapt.plugins.jaket.gat import CompositionGAT

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"


def test_split_is_20_20_60_and_training_fraction_cuts_train_only():
    labels = torch.tensor([0, 1] * 50 + [-100] * 10)
    full = split_entities(labels, seed=1)
    assert (full.train.numel(), full.dev.numel(), full.test.numel()) == (20, 20, 60)
    assert torch.cat([full.train, full.dev, full.test]).unique().numel() == 100 and (labels[full.test] >= 0).all()
    five = split_entities(labels, train_fraction=0.05, seed=1)
    assert five.train.numel() == 1 and torch.equal(five.train, full.train[:1]) and torch.equal(five.test, full.test)
    with pytest.raises(KadaptError, match="labelled entities"):
        split_entities(torch.full((5,), -100))


def test_classifier_learns_from_features_and_through_the_gat():
    graph = read_kg(TINY_KG)
    labels = graph.category_tensor()
    torch.manual_seed(0)
    features = torch.nn.functional.one_hot(labels, 16).float() * 3 + 0.1 * torch.randn(12, 16)
    relations = torch.randn(8, 16)
    # split seed 3: every test class occurs in the training part (seed 0 put the one entity of a class
    # into test, which the plain classifier could only get right by chance)
    split = split_entities(labels, fractions=(0.5, 0.25, 0.25), seed=3)
    plain = train_entity_classifier(graph, features, relations, labels, split, None, steps=60, lr=0.05, batch_size=4)
    assert plain["test_accuracy"] >= 0.99 and plain["train_entities"] == 6
    torch.manual_seed(1)  # the GAT's initialisation
    with_gat = train_entity_classifier(graph, features, relations, labels, split, CompositionGAT(16, 2, 4),
                                       steps=60, lr=0.02, batch_size=4, fanouts=(3, 3))
    # seeded, through the one loop (evaluation every 8 steps). Dev entity 7 is the only one of class 2,
    # which no training entity has, so 2/3 is the best dev accuracy; it is reached at step 8 and kept,
    # so selection keeps step 8 (first best), where no test entity is right yet; from step 16 on all are
    assert [round(h["accuracy"], 3) for h in with_gat["dev_history"]] == [0.667] * 8
    assert with_gat["best_step"] == 8 and with_gat["test_accuracy"] == 0.0
    assert [h["test_accuracy"] for h in with_gat["dev_history"][1:]] == [1.0] * 7
    untrained = train_entity_classifier(graph, features, relations, labels, split, CompositionGAT(16, 2, 4),
                                        steps=1, lr=0.0, batch_size=4, fanouts=(3, 3))
    assert untrained["dev_accuracy"] < with_gat["dev_accuracy"]
