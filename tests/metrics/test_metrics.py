"""Each packaged metric against a case worked by hand from the official scorer's definition."""
from __future__ import annotations

import pytest

from kadapt.core.errors import KadaptError
from kadapt.metrics import available_metrics, load_metric
from kadapt.metrics.scoring import bio_chunks, normalize_answer, qa_scores


def test_packaged_metrics_are_listed():
    assert {"squad_em_f1", "seqeval_f1", "accuracy", "precision_at_1"} <= set(available_metrics())
    with pytest.raises(KadaptError, match="unknown metric 'bleu'"):
        load_metric("bleu")


def test_squad_em_f1_by_hand():
    # 1) "The Eiffel Tower!" -> "eiffel tower" = gold "Eiffel Tower": EM 1, F1 1.
    # 2) "in the tower of Paris" -> [in, tower, of, paris] vs [eiffel, tower]: 1 common token,
    #    P = 1/4, R = 1/2, F1 = 2 * (1/8) / (3/4) = 1/3; EM 0. Means: EM 50, F1 (1 + 1/3) / 2 = 66.67.
    result = load_metric("squad_em_f1").compute(
        predictions=["The Eiffel Tower!", "in the tower of Paris"],
        references=[["Eiffel Tower", "tower"], ["Eiffel Tower"]])
    assert result["exact_match"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_squad_normalisation_rules():
    assert normalize_answer("  An   apple, THE pear.  ") == "apple pear"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("«Paris»") == "«paris»"  # SQuAD strips ASCII punctuation only


def test_mlqa_language_rules_by_hand():
    # German articles: "Die Katze." -> "katze" = "Katze" under MLQA de; under SQuAD "die katze" vs "katze":
    # P = 1/2, R = 1, F1 = 2/3.
    assert qa_scores("Die Katze.", ["Katze"], "de", "mlqa") == (1.0, 1.0)
    em, f1 = qa_scores("Die Katze.", ["Katze"], "en", "squad")
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    # Chinese mixed segmentation: 北京市 vs 北京 -> [北, 京, 市] vs [北, 京]: P = 2/3, R = 1, F1 = 0.8.
    em, f1 = qa_scores("北京市", ["北京"], "zh", "mlqa")
    assert em == 0.0 and f1 == pytest.approx(0.8)
    # MLQA strips every Unicode punctuation mark
    assert qa_scores("«Paris»", ["Paris"], "en", "mlqa") == (1.0, 1.0)
    result = load_metric("squad_em_f1").compute(predictions=["Die Katze."], references=[["Katze"]],
                                                scheme="mlqa", languages=["de"])
    assert result == {"exact_match": 100.0, "f1": 100.0}


def test_seqeval_f1_by_hand():
    # gold chunks: PER[0,1], LOC[3,3]; predicted: PER[0,1], ORG[3,3] -> tp 1, P = R = F1 = 1/2.
    # second sentence (IOB1 style): I-PER I-PER is one PER chunk [0,1] like B-PER I-PER -> tp 1.
    result = load_metric("seqeval_f1").compute(
        predictions=[["B-PER", "I-PER", "O", "B-ORG"], ["I-PER", "I-PER", "O"]],
        references=[["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O"]])
    # tp = 2, predicted = 3, gold = 3
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)


def test_chunking_follows_conlleval():
    assert bio_chunks(["B-PER", "I-LOC", "I-LOC", "O"]) == {("PER", 0, 0), ("LOC", 1, 2)}
    assert bio_chunks(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    assert bio_chunks(["S-LOC", "B-ORG", "E-ORG", "I-ORG"]) == {("LOC", 0, 0), ("ORG", 1, 2), ("ORG", 3, 3)}
    assert bio_chunks(["O", "O"]) == set()


def test_accuracy_by_hand():
    assert load_metric("accuracy").compute(predictions=["a", "b", "c", "d"], references=["a", "b", "c", "x"]) == {
        "accuracy": 0.75}


def test_precision_at_1_by_hand():
    # hits: Paris (yes), Lyon vs Paris (no), x (yes) -> 2/3; per relation P1: 1/2, P2: 1 -> macro 3/4.
    result = load_metric("precision_at_1").compute(
        predictions=[["Paris", "Rome"], ["Lyon"], ["x"]], references=["Paris", "Paris", "x"],
        relations=["P1", "P1", "P2"])
    assert result["precision_at_1"] == pytest.approx(2 / 3)
    assert result["precision_at_1_macro"] == pytest.approx(0.75)
