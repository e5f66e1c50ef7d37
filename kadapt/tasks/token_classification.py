"""Token classification (POS tagging, NER): a linear layer on each word's FIRST sub-token.

Other sub-tokens, special tokens and padding are ignored (-100). ``pos_tagging`` reports accuracy
over words; ``ner`` reports entity-level micro P/R/F1 with conlleval chunking
(:func:`kadapt.metrics.scoring.bio_chunks`). Words cut off by ``max_length`` are not scored; their
number is reported as ``words_truncated`` (never silently dropped).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import LabelVocab
from kadapt.data.records import TaggingExample
from kadapt.metrics.scoring import prf, span_counts
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)
from kadapt.tasks.inputs import word_first_tokens

IGNORE = -100


class _TokenTagger(Objective):
    def __init__(self, feature_size: int, labels: list[str], dropout: float = 0.1):
        super().__init__(feature_size)
        if not labels:
            raise ValueError(f"{self.name} needs a non-empty label list")
        self.vocab = LabelVocab.from_list(list(labels))
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_size, len(labels))

    @staticmethod
    def label_set(records: list[TaggingExample]) -> list[str]:
        return sorted({tag for r in records for tag in r.tags})

    def encode(self, record: TaggingExample, tokenizer, max_length: int) -> dict:
        enc, first = word_first_tokens(record.words, tokenizer, max_length, record.source)
        labels = [IGNORE] * len(enc["input_ids"])
        for word, token in enumerate(first):
            if token >= 0:
                labels[token] = self.vocab.id(record.tags[word], record.source)
        return {"input_ids": list(enc["input_ids"]), "labels": labels, "n_words": len(record.words)}

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        logits = self.classifier(self.dropout(features))
        loss = None
        if "labels" in batch:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE)
        return ObjectiveOutput(loss, logits)

    def _sequences(self, logits: torch.Tensor, batch: dict) -> list[tuple[list[str], list[str]]]:
        labels = self.vocab.to_list()
        out = []
        for pred, gold in zip(logits.argmax(-1).tolist(), batch["labels"].tolist()):
            keep = [i for i, g in enumerate(gold) if g != IGNORE]
            out.append(([labels[pred[i]] for i in keep], [labels[gold[i]] for i in keep]))
        return out

    def _word_counts(self, batch: dict) -> dict[str, float]:
        scored = float((batch["labels"] != IGNORE).sum())
        return {"words": scored, "words_truncated": float(batch["n_words"].sum()) - scored}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return [pred for pred, _ in self._sequences(logits, batch)]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list(), "dropout": self._dropout_p}


@register_objective
class PosTagging(_TokenTagger):
    """UPOS (or any per-word tag set) scored by word accuracy."""

    name = "pos_tagging"
    main_metric = "accuracy"

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        gold = batch["labels"]
        correct = float(((logits.argmax(-1) == gold) & (gold != IGNORE)).sum())
        return {"correct": correct, **self._word_counts(batch)}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"accuracy": safe_div(counts["correct"], counts["words"]), "words": counts["words"],
                "words_truncated": counts["words_truncated"]}


@register_objective
class NamedEntityRecognition(_TokenTagger):
    """BIO/IOBES entity tags scored by exact-chunk micro F1."""

    name = "ner"
    main_metric = "f1"

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        totals = {"tp": 0.0, "pred": 0.0, "gold": 0.0}
        for pred, gold in self._sequences(logits, batch):
            for key, value in span_counts(pred, gold).items():
                totals[key] += value
        return {**totals, **self._word_counts(batch)}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {**prf(counts["tp"], counts["pred"], counts["gold"]), "words": counts["words"],
                "words_truncated": counts["words_truncated"]}
