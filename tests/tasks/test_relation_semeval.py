"""SemEval-2010 relation head: the official (9+1)-way macro-F1 with directionality."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.data.semeval import read_semeval2010
from kadapt.core.objective import build_objective
from kadapt.tasks.relation_semeval import (
    relation_type,
    semeval_counts,
    summarize_semeval,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "semeval2010_task8.txt"

CE12, CE21, CW12, CW21, MC12 = ("Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Component-Whole(e1,e2)",
                                "Component-Whole(e2,e1)", "Member-Collection(e1,e2)")
# gold / predicted, 7 examples
GOLD = [CE12, CE12, CE21, CW12, CW21, "Other", "Other"]
PRED = [CE12, CE21, CE21, CW12, "Other", CE12, MC12]


def test_official_score_hand_computed():
    # Scorer v1.2, evaluation (iii): per relation type (direction stripped), gold types present, Other excluded.
    # Cause-Effect: correct 2 (ex. 1, 3); predicted as Cause-Effect 4 (ex. 1, 2 wrong dir, 3, 6); gold 3
    #   P = 2/4, R = 2/3, F1 = 4/7
    # Component-Whole: correct 1 (ex. 4); predicted 1; gold 2 -> P = 1, R = 1/2, F1 = 2/3
    # Member-Collection: not in the gold labels -> not averaged (its false positive lowers no averaged precision)
    # macro-F1 = (4/7 + 2/3) / 2
    s = summarize_semeval(semeval_counts(GOLD, PRED))
    assert s["macro_f1"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert s["macro_precision"] == pytest.approx((0.5 + 1) / 2) and s["macro_recall"] == pytest.approx((2 / 3 + 0.5) / 2)
    # micro over the two types: correct 3, predicted 5, gold 5
    assert s["micro_f1"] == pytest.approx(0.6)
    assert s["accuracy"] == pytest.approx(3 / 7)
    assert relation_type(CE21) == "Cause-Effect" and relation_type("Other") == "Other"


def test_head_counts_add_up_over_batches_to_the_one_shot_score():
    labels = sorted(set(GOLD) | set(PRED))
    head = build_objective("relation_semeval", 4, {"labels": labels})
    gold = torch.tensor([labels.index(g) for g in GOLD])
    logits = torch.nn.functional.one_hot(torch.tensor([labels.index(p) for p in PRED]), len(labels)).float()
    parts = [head.count(logits[:3], {"labels": gold[:3]}), head.count(logits[3:], {"labels": gold[3:]})]
    total = {k: parts[0].get(k, 0.0) + parts[1].get(k, 0.0) for k in set(parts[0]) | set(parts[1])}
    assert type(head).summarize(total) == pytest.approx(summarize_semeval(semeval_counts(GOLD, PRED)))
    assert head.main_metric == "macro_f1" and head.config_dict()["other_label"] == "Other"


def test_encode_marks_e1_with_at_and_e2_with_hash(tiny_backbone):
    records = list(read_semeval2010(FIXTURE))
    head = build_objective("relation_semeval", 4, {"labels": sorted({r.label for r in records})})
    feats = head.encode(records[7], tiny_backbone.tokenizer, 64)  # "<e1>People</e1> ... <e2>downtown</e2>"
    tokens = tiny_backbone.tokenizer.convert_ids_to_tokens(feats["input_ids"])
    assert tokens[feats["subj_pos"]] == "@" and tokens[feats["obj_pos"]] == "#"
    assert feats["subj_pos"] < feats["obj_pos"]
    assert head.vocab.label(feats["labels"]) == "Entity-Destination(e1,e2)"
