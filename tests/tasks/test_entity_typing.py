"""Entity typing head: ``@`` marking, first-``@`` feature, multi-label BCE, loose/strict metrics."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.data.open_entity import GENERAL_TYPES, read_open_entity
from kadapt.data.records import EntityTypingExample
from kadapt.core.errors import DataError
from kadapt.core.objective import build_objective
from kadapt.tasks.entity_typing import mark_mention, typing_scores

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "open_entity_crowd.json"


def test_mark_mention_puts_one_at_sign_each_side():
    marked, first, closing = mark_mention("Obama visited Paris today.", (14, 19))
    assert marked == "Obama visited @ Paris @ today."
    assert (marked[first], marked[closing]) == ("@", "@") and marked[first:closing + 1] == "@ Paris @"
    assert mark_mention("Paris", (0, 5))[0] == "@ Paris @"


def test_encode_points_at_the_first_marker_and_sets_multi_hot_labels(tiny_backbone):
    tok = tiny_backbone.tokenizer
    head = build_objective("entity_typing", 8, {"labels": list(GENERAL_TYPES)})
    ex = EntityTypingExample("Marie Curie worked in Paris .", (22, 27), ("location", "place"), "x:1")
    feats = head.encode(ex, tok, 32)
    tokens = tok.convert_ids_to_tokens(feats["input_ids"])
    assert tokens[feats["mention_pos"]] == "@"
    assert tokens[feats["mention_pos"] + 1:].index("@") > 0  # the closing marker follows the mention
    assert feats["labels"] == [float(t in ("location", "place")) for t in GENERAL_TYPES]
    with pytest.raises(DataError, match="x:1: mention cut off by truncation"):
        head.encode(ex, tok, 5)
    with pytest.raises(DataError, match="x:1: mention span"):
        head.encode(EntityTypingExample("Paris", (3, 9), (), "x:1"), tok, 32)
    with pytest.raises(DataError, match="unknown label 'city'"):
        head.encode(EntityTypingExample("Paris", (0, 5), ("city",), "x:1"), tok, 32)


def test_forward_reads_the_marker_feature_and_predicts_logits_above_threshold():
    head = build_objective("entity_typing", 3, {"labels": ["a", "b"], "dropout": 0.0})
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        head.classifier.bias.zero_()
    feats = torch.zeros(2, 4, 3)
    feats[0, 1] = torch.tensor([2.0, -1.0, 0])
    feats[1, 3] = torch.tensor([1.0, 1.0, 0])
    batch = {"mention_pos": torch.tensor([1, 3]), "labels": torch.tensor([[1.0, 0], [0, 1.0]])}
    out = head(feats, batch)
    torch.testing.assert_close(out.logits, torch.tensor([[2.0, -1.0], [1.0, 1.0]]))
    assert head.predict(out.logits, batch) == [["a"], ["a", "b"]]
    metrics = type(head).summarize(head.count(out.logits, batch))
    # gold {a}, {b}; predicted {a}, {a, b}: micro P = 2/3, R = 1, strict = 1/2
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == 1.0
    assert metrics["strict_accuracy"] == 0.5
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch["labels"]))


def test_typing_scores_hand_computed():
    gold = [["person", "group"], ["time"], ["place"], []]
    pred = [["person"], [], ["place", "location"], ["event"]]
    s = typing_scores(gold, pred)
    # strict: none of the 4 sets matches exactly -> 0/4
    assert s["strict_accuracy"] == 0.0
    # loose micro: correct 2 (person, place), predicted 4, gold 4
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5) and s["micro_f1"] == pytest.approx(0.5)
    # loose macro: P = (1 + 0 + 1/2 + 0) / 4, R = (1/2 + 0 + 1 + 0) / 4
    assert s["macro_precision"] == pytest.approx(0.375) and s["macro_recall"] == pytest.approx(0.375)


def test_head_loss_goes_down_on_the_fixture(tiny_backbone):
    records = list(read_open_entity(FIXTURE))
    model = KnowledgeModel(tiny_backbone, [])
    torch.manual_seed(0)
    model.head = build_objective("entity_typing", model.feature_size, {"labels": list(GENERAL_TYPES), "dropout": 0.0})
    batch = collate([model.head.encode(r, tiny_backbone.tokenizer, 64) for r in records], tiny_backbone.tokenizer.pad_token_id)
    opt = torch.optim.AdamW(model.head.parameters(), lr=5e-2)
    losses = []
    for _ in range(30):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
