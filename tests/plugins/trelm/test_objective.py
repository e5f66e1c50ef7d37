"""TRELM objective: encoding (object masked, subject range, bad spans), CKA + MLM mixed by θ (eq. 2–3),
the MLM head (backbone's own when present, else new), and the knowledge probability used by attribution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kadapt.core.backbone import FrozenBackbone
from kadapt.data.encoding import collate
from kadapt.data.records import RelationExample
from kadapt.core.errors import DataError, KadaptError
from kadapt.core.objective import build_objective
from kadapt.plugins.trelm.objective import IGNORE, entity_key, pretrained_mlm_head

SENTENCE = RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "facts.jsonl:3#0")


def objective(backbone, **config):
    torch.manual_seed(0)
    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size, config)
    head.bind_backbone(backbone)
    return head


def test_encode_masks_the_object_and_marks_the_subject(backbone):
    tok = backbone.tokenizer
    feats = objective(backbone).encode(SENTENCE, tok, 32)
    plain = tok(SENTENCE.text)["input_ids"]
    obj = [t for t, label in enumerate(feats["cka_labels"]) if label != IGNORE]
    assert obj and all(feats["input_ids"][t] == tok.mask_token_id for t in obj)
    assert [feats["cka_labels"][t] for t in obj] == [plain[t] for t in obj]
    subject = tok.decode(plain[feats["subj_start"]:feats["subj_end"]]).replace(" ", "").lower()
    assert subject == "barackobama"
    assert feats["subj_key"] == entity_key("barack  OBAMA")
    # MLM never targets entity or special tokens; the draw is fixed per sentence
    for t, label in enumerate(feats["mlm_labels"]):
        if label != IGNORE:
            assert t not in obj and not (feats["subj_start"] <= t < feats["subj_end"]) and 0 < t < len(plain) - 1
    assert objective(backbone, mlm_probability=1.0).encode(SENTENCE, tok, 32)["mlm_labels"].count(IGNORE) < len(plain)


def test_entity_that_cannot_be_found_is_a_data_error(backbone):
    head = objective(backbone)
    cut = RelationExample("Barack Obama was born in a town called Hawaii far away .", (0, 12), (39, 45), "P19", "f.jsonl:9#1")
    with pytest.raises(DataError, match=r"f.jsonl:9#1: object 'Hawaii' .* no token .*max_length=6"):
        head.encode(cut, backbone.tokenizer, 6)
    empty = RelationExample("Barack Obama was born in Hawaii .", (0, 12), (31, 31), "P19", "f.jsonl:2#0")
    with pytest.raises(DataError, match="f.jsonl:2#0: object '' at characters \\(31, 31\\) has no token"):
        head.encode(empty, backbone.tokenizer, 32)
    with pytest.raises(KadaptError, match="RelationExample"):
        head.encode({"text": "x"}, backbone.tokenizer, 32)


def test_loss_is_theta_mix_of_mlm_and_cka(backbone):
    head = objective(backbone, theta=0.3, num_negatives=4, mlm_probability=0.5)
    batch = collate([head.encode(SENTENCE, backbone.tokenizer, 32)] * 2, backbone.tokenizer.pad_token_id)
    assert (batch["mlm_labels"] != IGNORE).any()
    features = torch.randn(*batch["input_ids"].shape, 2 * backbone.spec.hidden_size)
    torch.manual_seed(5)
    loss = head(features, batch).loss
    # by hand, drawing the same negatives
    torch.manual_seed(5)
    hidden = features[..., backbone.spec.hidden_size:]
    target = batch["cka_labels"] != IGNORE
    labels = batch["cka_labels"][target]
    negatives = head.sample_negatives(labels)
    assert not (negatives == labels[:, None]).any()  # Q never draws the true token
    scores = head.candidate_scores(hidden[target], labels, negatives)
    cka = -scores.log_softmax(-1)[:, 0].mean()
    where = batch["mlm_labels"] != IGNORE
    mlm = F.cross_entropy(head.vocab_logits(hidden[where]), batch["mlm_labels"][where])
    torch.testing.assert_close(loss, 0.3 * mlm + 0.7 * cka)
    with pytest.raises(KadaptError, match="theta"):
        build_objective("trelm_knowledge", 8, {"theta": 1.5})


def test_knowledge_probability_and_metrics(backbone):
    head = objective(backbone, num_negatives=3)
    batch = collate([head.encode(SENTENCE, backbone.tokenizer, 32)] * 3, backbone.tokenizer.pad_token_id)
    hidden = torch.randn(*batch["input_ids"].shape, backbone.spec.hidden_size)
    labels = batch["cka_labels"]
    batch["cka_negatives"] = head.sample_negatives(labels.clamp_min(0).flatten()).view(*labels.shape, -1)
    prob = head.knowledge_probability(hidden, batch)
    assert prob.shape == (3,) and bool(((prob > 0) & (prob < 1)).all())
    out = head(torch.cat([hidden, hidden], -1), batch)
    counts = head.count(out.logits, batch)
    assert counts["tokens"] == float((labels != IGNORE).sum())
    # top-1 over known logits: rows 0, 2, 4, ... rank the gold token first, the others a wrong one
    gold = labels[labels != IGNORE]
    n = gold.numel()
    known = torch.zeros(n, out.logits.shape[-1])
    for i, token in enumerate(gold.tolist()):
        known[i, token if i % 2 == 0 else (token + 1) % known.shape[1]] = 1.0
    counts = head.count(known, batch)
    assert counts == {"tokens": float(n), "correct": float((n + 1) // 2)}
    assert head.summarize(counts)["object_top1"] == pytest.approx(((n + 1) // 2) / n)


def test_unbound_head_is_a_clear_error():
    head = build_objective("trelm_knowledge", 16, {})
    with pytest.raises(KadaptError, match="bind_backbone"):
        head.vocab_logits(torch.zeros(1, 8))


def test_backbone_mlm_head_is_used_when_present(tiny_backbone_dir):
    with_head = tiny_backbone_dir("bert", num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32,
                                  with_mlm_head=True)
    found = pretrained_mlm_head(with_head)
    assert found is not None and found["dense.weight"].shape == (16, 16)
    backbone = FrozenBackbone.from_pretrained(with_head)
    head = build_objective("trelm_knowledge", 32, {})
    head.bind_backbone(backbone)
    assert torch.equal(head.head.dense.weight, found["dense.weight"])
    assert torch.equal(head.head.bias, found["bias"])
    without = tiny_backbone_dir("bert", num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32)
    assert pretrained_mlm_head(without) is None
