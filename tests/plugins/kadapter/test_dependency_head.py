"""Dependency head prediction: padded positions can never be predicted, UAS on a hand-worked case."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.objective import build_objective


def test_padding_positions_masked_and_uas():
    torch.manual_seed(0)
    head = build_objective("dependency_head", 4, {"max_length": 8, "dropout": 0.0})
    feats = torch.randn(2, 5, 4)
    batch = {
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
        # sentence 2 has 1 word at position 1 attached to root (0); position 2 is its [SEP]
        "labels": torch.tensor([[-100, 2, 0, 2, -100], [-100, 0, -100, -100, -100]]),
    }
    out = head(feats, batch)
    assert out.logits.shape == (2, 5, 5)  # scores over positions of this batch only
    assert torch.all(out.logits[1, :, 3:] == torch.finfo(out.logits.dtype).min)  # padding never a head
    assert out.loss is not None and torch.isfinite(out.loss)
    # hand-set logits: sentence 1 predicts heads 2, 0, 1 (2 of 3 right); sentence 2 predicts 0 (right)
    logits = torch.full((2, 5, 5), -5.0)
    logits[0, 1, 2] = logits[0, 2, 0] = logits[0, 3, 1] = 5.0
    logits[1, 1, 0] = 5.0
    counts = head.count(logits, batch)
    assert counts == {"tokens": 4.0, "correct": 3.0}
    assert type(head).summarize(counts)["uas"] == pytest.approx(0.75)
    assert head.predict(logits, batch) == [[2, 0, 1], [0]]


def test_loss_decreases_when_fitting_one_batch():
    torch.manual_seed(0)
    head = build_objective("dependency_head", 8, {"max_length": 6, "dropout": 0.0})
    feats = torch.randn(3, 6, 8)
    batch = {"attention_mask": torch.ones(3, 6, dtype=torch.long),
             "labels": torch.tensor([[-100, 2, 0, 2, 3, -100]] * 3)}
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = head(feats, batch).loss.item()
    for _ in range(50):
        opt.zero_grad()
        loss = head(feats, batch).loss
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
