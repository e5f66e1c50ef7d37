"""TACRED: the official JSON format through the ``tacred`` reader, the head, and the scorer's micro-F1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kadapt.data.formats import read_records
from kadapt.core.objective import build_objective
from kadapt.tasks.relation_tacred import tacred_scores

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tacred.json"


def test_official_tacred_json_reads_with_inclusive_token_spans():
    records = read_records("tacred", FIXTURE)
    raw = json.loads(FIXTURE.read_text())
    assert [r.label for r in records] == [x["relation"] for x in raw]
    first = records[0]
    assert first.text[slice(*first.subj_span)] == "Douglas Flint"  # subj_start 8 .. subj_end 9 (inclusive)
    assert first.text[slice(*first.obj_span)] == "chairman"
    assert records[1].text[slice(*records[1].subj_span)] == "Julius Baer"  # subject after the object
    assert first.source == f"{FIXTURE}:#0"


def test_tacred_scores_hand_computed():
    gold = ["per:title", "no_relation", "org:founded_by", "per:title", "no_relation"]
    pred = ["per:title", "per:title", "no_relation", "org:founded_by", "no_relation"]
    s = tacred_scores(gold, pred)
    # guessed (non-NA predictions) = 3, gold non-NA = 3, correct non-NA = 1 -> P = R = F1 = 1/3
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
    assert s["micro_f1"] == pytest.approx(1 / 3) and s["accuracy"] == pytest.approx(2 / 5)


def test_head_defaults_to_no_relation_as_the_negative_label(tiny_backbone):
    records = read_records("tacred", FIXTURE)
    labels = sorted({r.label for r in records})
    head = build_objective("relation_tacred", 4, {"labels": labels})
    assert head.config_dict()["no_relation_label"] == "no_relation"
    assert head.no_relation_id == labels.index("no_relation")
    feats = head.encode(records[2], tiny_backbone.tokenizer, 64)
    tokens = tiny_backbone.tokenizer.convert_ids_to_tokens(feats["input_ids"])
    assert tokens[feats["subj_pos"]] == "@" and tokens[feats["obj_pos"]] == "#"
