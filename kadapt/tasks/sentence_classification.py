"""Sentence(-pair) classification (XNLI): a linear layer on the first token (``<s>``/``[CLS]``).

Pairs are encoded as the tokenizer's pair template (``<s> a </s></s> b </s>``), truncating the longer
side first. Metric: accuracy, plus ``accuracy_<lang>`` for each of XNLI's 15 languages present.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import LabelVocab
from kadapt.data.records import SentencePairExample, gold_is_optional
from kadapt.core.errors import DataError
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")


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
        if record.label is None and not gold_is_optional():
            raise DataError(record.source or "<example>", None, "example has no label")
        enc = tokenizer(record.text_a, record.text_b, truncation=True, max_length=max_length)
        lang = XNLI_LANGUAGES.index(record.language) if record.language in XNLI_LANGUAGES else -1
        feats = {"input_ids": list(enc["input_ids"]), "lang_id": lang}
        if record.label is not None:
            feats["labels"] = self.vocab.id(record.label, record.source)
        return feats

    def text_record(self, text: str, label=None, source: str = "text") -> SentencePairExample:
        """A sentence, or a pair as ``(text_a, text_b)``; no markup needed."""
        text_a, text_b = (text, None) if isinstance(text, str) else tuple(text)
        if not str(text_a).strip():
            raise DataError(source, None, "empty text")
        return SentencePairExample(text_a, text_b, label, source=source)

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        logits = self.classifier(self.dropout(features[:, 0]))
        loss = F.cross_entropy(logits.float(), batch["labels"]) if "labels" in batch else None
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        right = logits.argmax(-1) == batch["labels"]
        counts = {"n": float(right.numel()), "correct": float(right.sum())}
        lang = batch.get("lang_id")
        for index in ([] if lang is None else lang.unique().tolist()):
            if index >= 0:
                chosen = lang == index
                counts[f"n_{XNLI_LANGUAGES[index]}"] = float(chosen.sum())
                counts[f"correct_{XNLI_LANGUAGES[index]}"] = float(right[chosen].sum())
        return counts

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        out = {"accuracy": safe_div(counts["correct"], counts["n"])}
        languages = sorted(k[2:] for k in counts if k.startswith("n_"))
        if len(languages) > 1:
            out.update({f"accuracy_{lang}": safe_div(counts[f"correct_{lang}"], counts[f"n_{lang}"]) for lang in languages})
        return out

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        labels = self.vocab.to_list()
        return [labels[i] for i in logits.argmax(-1).tolist()]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list(), "dropout": self._dropout_p}
