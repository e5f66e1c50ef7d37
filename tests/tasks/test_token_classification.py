"""POS tagging and NER heads: first-subword labels, word accuracy / entity F1 by hand, training."""
from __future__ import annotations

import pytest
import torch
from task_kit import batch_of, fit

from kadapt.data.formats import read_records
from kadapt.core.errors import DataError
from kadapt.core.objective import objective_class


@pytest.fixture
def ner_records(fixtures):
    return read_records("conll_ner", fixtures / "conll2003.txt")


def test_only_first_subwords_carry_labels(head_model, ner_records):
    labels = objective_class("ner").label_set(ner_records)
    model = head_model("ner", {"labels": labels})
    tok = model.backbone.tokenizer
    feats = model.head.encode(ner_records[0], tok, 64)
    scored = [i for i, label in enumerate(feats["labels"]) if label != -100]
    assert len(scored) == len(ner_records[0].words) == feats["n_words"]
    assert [labels[feats["labels"][i]] for i in scored] == list(ner_records[0].tags)
    pieces = tok.convert_ids_to_tokens(feats["input_ids"])
    assert all(not pieces[i].startswith("##") for i in scored)  # a word's first piece
    assert len(pieces) > len(scored) + 2  # "rejects", "boycott" ... split into several pieces


def test_ner_counts_entities_by_hand(head_model, ner_records):
    labels = sorted({*objective_class("ner").label_set(ner_records), "I-LOC"})
    model = head_model("ner", {"labels": labels})
    batch = batch_of(model, ner_records[1:3])  # "Peter Blackburn" B-PER I-PER ; "BRUSSELS 1996-08-22" B-LOC O
    gold = batch["labels"]
    logits = torch.zeros(*gold.shape, len(labels))
    for b, row in enumerate(gold.tolist()):
        for t, label in enumerate(row):
            if label != -100:
                logits[b, t, label] = 1.0
    first = [t for t, label in enumerate(gold[0].tolist()) if label != -100][1]
    logits[0, first] = 0.0
    logits[0, first, labels.index("I-LOC")] = 1.0  # PER chunk broken: predicted B-PER I-LOC
    # predicted chunks: PER[0,0], LOC[1,1], LOC[0,0] (2nd sentence); gold: PER[0,1], LOC[0,0] -> tp 1
    metrics = model.head.summarize(model.head.count(logits, batch))
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["f1"] == pytest.approx(0.4) and metrics["words"] == 4 and metrics["words_truncated"] == 0
    assert model.head.predict(logits, batch)[0] == ["B-PER", "I-LOC"]


def test_pos_accuracy_truncation_and_training(head_model, fixtures):
    records = read_records("conllu_upos", fixtures / "sample.conllu")
    labels = objective_class("pos_tagging").label_set(records)
    model = head_model("pos_tagging", {"labels": labels})
    batch = batch_of(model, records, 64)
    losses = fit(model, batch, steps=40)
    assert losses[-1] < 0.3 * losses[0]
    metrics = model.head.summarize(model.head.count(model(batch).logits, batch))
    assert metrics["accuracy"] > 0.9 and metrics["words_truncated"] == 0
    short = batch_of(model, records, 6)  # 4 word pieces fit: the rest of each sentence is reported
    counts = model.head.count(model(short).logits, short)
    assert counts["words"] + counts["words_truncated"] == sum(len(r.words) for r in records)
    assert counts["words_truncated"] > 0


def test_unknown_tag_at_test_time_names_the_record(head_model, ner_records):
    model = head_model("ner", {"labels": ["O", "B-PER", "I-PER"]})
    with pytest.raises(DataError, match=r"conll2003.txt:3: unknown label 'B-ORG'"):
        model.head.encode(ner_records[0], model.backbone.tokenizer, 64)
