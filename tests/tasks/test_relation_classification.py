"""Relation classification head: marker vs mean entity pooling, metrics."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.core.objective import build_objective


def _batch():
    return {"subj_pos": torch.tensor([1, 0]), "subj_end": torch.tensor([4, 2]),
            "obj_pos": torch.tensor([5, 3]), "obj_end": torch.tensor([7, 5]), "labels": torch.tensor([0, 1])}


def test_marker_pooling_reads_first_marker_and_mean_pooling_averages_inside_markers():
    feats = torch.arange(2 * 8 * 2, dtype=torch.float32).view(2, 8, 2)
    marker = build_objective("relation_classification", 2, {"labels": ["a", "b"], "dropout": 0.0})
    mean = build_objective("relation_classification", 2, {"labels": ["a", "b"], "dropout": 0.0, "pooling": "mean"})
    assert torch.equal(marker._entity(feats, _batch(), "subj"), feats[[0, 1], [1, 0]])
    expected_subj = torch.stack([feats[0, 2:4].mean(0), feats[1, 1:2].mean(0)])
    expected_obj = torch.stack([feats[0, 6:7].mean(0), feats[1, 4:5].mean(0)])
    torch.testing.assert_close(mean._entity(feats, _batch(), "subj"), expected_subj)
    torch.testing.assert_close(mean._entity(feats, _batch(), "obj"), expected_obj)
    assert mean.config_dict()["pooling"] == "mean"
    with pytest.raises(KadaptError, match="^objective: bad config for objective 'relation_classification': pooling "
                                          "must be 'marker' or 'mean', got 'max'$"):
        build_objective("relation_classification", 2, {"labels": ["a"], "pooling": "max"})


def test_micro_f1_excludes_no_relation_label():
    head = build_objective("relation_classification", 2, {"labels": ["no_relation", "r1", "r2"],
                                                          "no_relation_label": "no_relation"})
    # gold: r1, no_relation, r2, r1 ; predicted: r1, r1, no_relation, r2
    logits = torch.tensor([[0, 9, 0], [0, 9, 0], [9, 0, 0], [0, 0, 9]], dtype=torch.float32)
    counts = head.count(logits, {"labels": torch.tensor([1, 0, 2, 1])})
    metrics = type(head).summarize(counts)
    # TACRED scorer: tp=1 (first), predicted non-NA=3, gold non-NA=3 → P=R=F1=1/3; accuracy 1/4
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["micro_f1"] == pytest.approx(1 / 3) and metrics["accuracy"] == pytest.approx(0.25)
