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
    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size, {"inject_both_directions": False, **config})
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


def test_fixed_draws_do_not_depend_on_the_data_folder(backbone):
    tok = backbone.tokenizer
    head = objective(backbone, mlm_probability=0.5, inject_both_directions=True)
    moved = [RelationExample(SENTENCE.text, SENTENCE.subj_span, SENTENCE.obj_span, "P19", f"{folder}/facts.jsonl:3#0")
             for folder in ("/data/a", "/tmp/pytest-7/b", "relative")]
    encoded = [head.encode(r, tok, 32) for r in [SENTENCE, *moved]]
    assert all(e == encoded[0] for e in encoded[1:])
    other_line = RelationExample(SENTENCE.text, SENTENCE.subj_span, SENTENCE.obj_span, "P19", "facts.jsonl:4#0")
    other_text = RelationExample("Barack Obama was born in Hawaii in 1961 .", SENTENCE.subj_span, SENTENCE.obj_span, "P19",
                                 SENTENCE.source)
    draws = {str(head.encode(r, tok, 32)["mlm_labels"]) for r in (SENTENCE, other_line, other_text)}
    assert len(draws) >= 2  # the draw follows the file name, line and text


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


def hand_sampled_softmax(head, hidden_row, label, negatives) -> float:
    """P of the true token among [true, negatives] with f(h, y) = t(h)·E_y + b_y, one token by hand."""
    t = F.layer_norm(F.gelu(hidden_row @ head.head.dense.weight.T + head.head.dense.bias), (hidden_row.shape[-1],),
                     head.head.norm.weight, head.head.norm.bias, head.head.norm.eps)
    cands = [int(label)] + [int(n) for n in negatives]
    scores = torch.stack([t @ head.embeddings[c] + head.head.bias[c] for c in cands])
    return float(torch.exp(scores[0]) / torch.exp(scores).sum())


def test_knowledge_probability_and_metrics(backbone):
    head = objective(backbone, num_negatives=3)
    two = RelationExample("Paris is the capital of France .", (0, 5), (24, 30), "P1376", "f.jsonl:1#0")
    batch = collate([head.encode(r, backbone.tokenizer, 32) for r in (SENTENCE, two, SENTENCE)],
                    backbone.tokenizer.pad_token_id)
    hidden = torch.randn(*batch["input_ids"].shape, backbone.spec.hidden_size)
    labels = batch["cka_labels"]
    batch["cka_negatives"] = head.sample_negatives(labels.clamp_min(0).flatten()).view(*labels.shape, -1)
    prob = head.knowledge_probability(hidden, batch)
    expected = []
    for row in range(3):  # P_x: the mean over the row's object tokens of the sampled-softmax probability
        where = [t for t in range(labels.shape[1]) if labels[row, t] != IGNORE]
        expected.append(sum(hand_sampled_softmax(head, hidden[row, t], labels[row, t], batch["cka_negatives"][row, t])
                            for t in where) / len(where))
    torch.testing.assert_close(prob, torch.tensor(expected), rtol=1e-5, atol=1e-7)
    gold = labels[labels != IGNORE]
    with torch.no_grad():
        head.head.bias[gold[0]] += 1e4  # the first gold token wins wherever it is gold: some hits, not all
    out = head(torch.cat([hidden, hidden], -1), batch)
    counts = head.count(out.logits, batch)
    assert counts["tokens"] == float(gold.numel())
    # top-1 over the full vocabulary, by hand: argmax of t(h)·E + b at each object token
    hand_top1 = [int(torch.argmax(head.vocab_logits(hidden[r, t][None]))) for r, t in (labels != IGNORE).nonzero().tolist()]
    correct = sum(int(p == int(g)) for p, g in zip(hand_top1, gold))
    assert counts["correct"] == float(correct)
    assert correct == int((gold == gold[0]).sum()) and 0 < correct < gold.numel()
    assert head.summarize(counts)["object_top1"] == correct / gold.numel()


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
