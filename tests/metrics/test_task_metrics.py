"""Packaged ``evaluate`` metric modules, each checked on a case computed by hand from the official
scorer's definition."""
from __future__ import annotations

import pytest

from kadapt.metrics import available_metrics, load_metric


def test_metrics_are_packaged():
    assert {"tacred_f1", "semeval2010_f1", "open_entity_f1", "figer_f1", "fewrel_accuracy"} <= set(available_metrics())


def test_tacred_f1_excludes_no_relation():
    m = load_metric("tacred_f1")
    # gold a, NA, b, a ; pred a, a, NA, b -> guessed 3, gold 3, correct 1 -> P = R = F1 = 1/3
    s = m.compute(predictions=["a", "a", "no_relation", "b"], references=["a", "no_relation", "b", "a"])
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
    assert s["micro_f1"] == pytest.approx(1 / 3) and s["accuracy"] == pytest.approx(1 / 4)


def test_semeval2010_f1_is_the_official_macro_f1_with_direction():
    m = load_metric("semeval2010_f1")
    refs = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Message-Topic(e2,e1)", "Other"]
    preds = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other", "Message-Topic(e1,e2)"]
    s = m.compute(predictions=preds, references=refs)
    # Cause-Effect: correct 1, predicted 2 (one with the wrong direction), gold 2 -> P = R = F1 = 1/2
    # Message-Topic: correct 0 -> F1 = 0.  Official score = (1/2 + 0) / 2
    assert s["macro_f1"] == pytest.approx(0.25)
    # micro without Other: correct 1, predicted 3, gold 3
    assert s["micro_f1"] == pytest.approx(1 / 3)
    # ignoring direction the second example would count: the official score must not do that
    assert m.compute(predictions=["Cause-Effect(e2,e1)"], references=["Cause-Effect(e1,e2)"])["macro_f1"] == 0.0


def test_open_entity_f1_loose_micro_macro_and_strict():
    m = load_metric("open_entity_f1")
    s = m.compute(predictions=[["person"], ["place", "location"], []],
                  references=[["person", "group"], ["place", "location"], ["time"]])
    # strict: 1/3 sets exact; micro: correct 3, predicted 3, gold 5 -> P = 1, R = 3/5, F1 = 3/4
    assert s["strict_accuracy"] == pytest.approx(1 / 3)
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(0.6) and s["micro_f1"] == pytest.approx(0.75)
    # macro: P = (1 + 1 + 0) / 3 (an empty prediction adds 0), R = (1/2 + 1 + 0) / 3
    assert s["macro_precision"] == pytest.approx(2 / 3) and s["macro_recall"] == pytest.approx(0.5)


def test_figer_f1_strict_loose_macro_loose_micro():
    m = load_metric("figer_f1")
    refs = [["/person", "/person/artist"], ["/location", "/location/city"], ["/organization"]]
    preds = [["/person", "/person/artist"], ["/location"], ["/person", "/organization/company"]]
    s = m.compute(predictions=preds, references=refs)
    # strict: only mention 1 is exact -> 1/3
    assert s["strict_accuracy"] == pytest.approx(1 / 3)
    # loose macro: P = (2/2 + 1/1 + 0/2) / 3 = 2/3, R = (2/2 + 1/2 + 0/1) / 3 = 1/2, F1 = 2PR/(P+R) = 4/7
    assert s["loose_macro_precision"] == pytest.approx(2 / 3) and s["loose_macro_recall"] == pytest.approx(0.5)
    assert s["loose_macro_f1"] == pytest.approx(4 / 7)
    # loose micro: correct 3, predicted 5, gold 5 -> P = R = F1 = 3/5
    assert s["loose_micro_precision"] == pytest.approx(0.6) and s["loose_micro_recall"] == pytest.approx(0.6)
    assert s["loose_micro_f1"] == pytest.approx(0.6)


def test_fewrel_accuracy():
    s = load_metric("fewrel_accuracy").compute(predictions=[0, 3, 2, 2], references=[0, 1, 2, 4])
    assert s == {"accuracy": 0.5, "episodes": 4}
