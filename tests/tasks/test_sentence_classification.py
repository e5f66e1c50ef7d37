"""Sentence-pair classification head on XNLI: pair encoding, accuracy by hand, training."""
from __future__ import annotations

import torch
from task_kit import batch_of, fit

from kadapt.data.formats import read_records
from kadapt.core.objective import objective_class


def test_xnli_pairs_accuracy_and_training(head_model, fixtures):
    records = read_records("xnli", fixtures / "xnli.dev.tsv")
    labels = objective_class("sentence_classification").label_set(records)
    assert labels == ["contradiction", "entailment", "neutral"]
    model = head_model("sentence_classification", {"labels": labels})
    tok = model.backbone.tokenizer
    feats = model.head.encode(records[0], tok, 64)
    assert feats["input_ids"].count(tok.sep_token_id) == 2  # [CLS] a [SEP] b [SEP]
    batch = batch_of(model, records)
    logits = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])  # gold: neutral, contra, entail, entail
    # en: 2 of 3 right, de: 1 of 1
    assert model.head.summarize(model.head.count(logits, batch)) == {"accuracy": 0.75, "accuracy_de": 1.0,
                                                                     "accuracy_en": 2 / 3}
    assert model.head.predict(logits, batch) == ["neutral", "contradiction", "neutral", "entailment"]
    distinct = batch_of(model, records[1:])  # records 0 and 1 are the same pair with two labels
    tuned = head_model("sentence_classification", {"labels": labels, "dropout": 0.0}, backbone_mode="full")
    tuned.eval()
    before = tuned(distinct).loss.item()
    fit(tuned, distinct, steps=30, lr=3e-3)
    assert tuned(distinct).loss.item() < 0.5 * before
