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


def _reference_head_by_hand(head, feats, mask):
    """lin-adapter.py's head written out: com_dense → one-head attention (padding keys masked) with
    BERT's output block → dense → out_proj, all in eval mode (no dropout)."""
    block = head.reference_block
    x = feats @ block.com_dense.weight.T + block.com_dense.bias
    width = x.shape[-1]
    wq, wk, wv = block.attention.in_proj_weight.split(width)
    bq, bk, bv = block.attention.in_proj_bias.split(width)
    q, k, v = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv
    scores = q @ k.transpose(1, 2) / width ** 0.5 + (1.0 - mask[:, None, :].float()) * -1e9
    context = torch.softmax(scores, -1) @ v
    attended = context @ block.attention.out_proj.weight.T + block.attention.out_proj.bias
    y = torch.nn.functional.layer_norm(x + attended, (width,), block.attention_norm.weight,
                                       block.attention_norm.bias, eps=1e-5)
    y = y @ block.dense.weight.T + block.dense.bias
    return y @ head.scorer.weight.T + head.scorer.bias


def test_reference_head_variant_matches_the_reference_math():
    torch.manual_seed(0)
    head = build_objective("dependency_head", 8, {"max_length": 6, "head": "reference"}).eval()
    assert head.config_dict() == {"max_length": 6, "dropout": 0.1, "head": "reference"}
    assert head.scorer.in_features == 4 and head.reference_block.com_dense.in_features == 8
    feats = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out = head(feats, {"attention_mask": mask})
    expected = _reference_head_by_hand(head, feats, mask)[:, :, :5]
    valid = mask.bool()[:, None, :].expand_as(expected)
    torch.testing.assert_close(out.logits[valid], expected[valid], rtol=1e-5, atol=1e-5)
    assert torch.all(out.logits[~valid] == torch.finfo(out.logits.dtype).min)
    # padding rows of sentence 2 change nothing in its real tokens
    feats2 = feats.clone()
    feats2[1, 3:] = 100.0
    torch.testing.assert_close(head(feats2, {"attention_mask": mask}).logits[1, :3], out.logits[1, :3])
    paper = build_objective("dependency_head", 8, {"max_length": 6})
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(paper) == 8 * 6 + 6
    assert n(head) == (8 * 4 + 4) + (3 * 4 * 4 + 3 * 4 + 4 * 4 + 4) + 2 * 4 + (4 * 4 + 4) + (4 * 6 + 6)


def test_unknown_head_variant_is_one_line():
    from kadapt.core.errors import KadaptError

    with pytest.raises(KadaptError, match=r"^recipe.yaml: objective.config: bad config for objective 'dependency_head': "
                                          r"dependency_head: head must be one of \['paper', 'reference'\], got 'anchor'$"):
        build_objective("dependency_head", 8, {"head": "anchor"}, source="recipe.yaml: objective.config")
