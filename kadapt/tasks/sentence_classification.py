"""Sentence(-pair) classification (XNLI): a linear layer on the first token (``<s>``/``[CLS]``).

Pairs are encoded as the tokenizer's pair template (``<s> a </s></s> b </s>``), truncating the longer
side first. Metric: accuracy (plus accuracy per language when the records carry several).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import LabelVocab
from kadapt.data.records import SentencePairExample
from kadapt.errors import DataError
from kadapt.objectives.base import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)


@register_objective
class SentenceClassification(Objective):
    name = "sentence_classification"
    main_metric = "accuracy"

    def __init__(self, feature_size: int, labels: list[str], dropout: float = 0.1):
        super().__init__(feature_size)
        if not labels:
            raise ValueError("sentence_classification needs a non-empty label list")
        self.vocab = LabelVocab.from_list(list(labels))
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_size, len(labels))

    @staticmethod
    def label_set(records: list[SentencePairExample]) -> list[str]:
        return sorted({r.label for r in records if r.label is not None})

    def encode(self, record: SentencePairExample, tokenizer, max_length: int) -> dict:
        if record.label is None:
            raise DataError(record.source or "<example>", None, "example has no label")
        enc = tokenizer(record.text_a, record.text_b, truncation=True, max_length=max_length)
        return {"input_ids": list(enc["input_ids"]), "labels": self.vocab.id(record.label, record.source)}

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        logits = self.classifier(self.dropout(features[:, 0]))
        loss = F.cross_entropy(logits.float(), batch["labels"]) if "labels" in batch else None
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        return {"n": float(batch["labels"].numel()), "correct": float((logits.argmax(-1) == batch["labels"]).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"accuracy": safe_div(counts["correct"], counts["n"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        labels = self.vocab.to_list()
        return [labels[i] for i in logits.argmax(-1).tolist()]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list(), "dropout": self._dropout_p}
