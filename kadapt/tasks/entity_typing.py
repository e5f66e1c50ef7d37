"""Entity typing head (K-Adapter §4.1): ``@`` before and after the mention, multi-label BCE.

The feature at the first ``@`` marker goes through dropout and a linear layer with one logit per type;
a type is predicted when its logit is above ``threshold`` (0 = probability 0.5, as in K-Adapter's
Open Entity code). Metrics (Ling & Weld 2012): strict accuracy (exact label set), loose macro and
loose micro precision / recall / F1; K-Adapter reports P, R and micro-F1 for Open Entity, i.e. the
loose micro triple. The arithmetic lives in :func:`kadapt.metrics.scoring.typing_scores` (re-exported
here), shared with the ``open_entity_f1`` and ``figer_f1`` metric modules.

With a plug-in that links entity mentions (JAKET with ``plugin_options.jaket``), each input also gets
``token_entities``: the linker's mentions in the marked sentence (the typed mention carries no id in
Open Entity / FIGER), and the instance counts as linked when a token of the typed mention got a KG row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import LabelVocab, _check_fast, _tokenize
from kadapt.data.markup import mention_span
from kadapt.data.mentions import EntityLinking, token_entities
from kadapt.data.records import EntityTypingExample
from kadapt.tasks.linked_mentions import LinksMentions
from kadapt.core.errors import DataError
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
)
from kadapt.metrics.scoring import (  # noqa: F401  (re-exported)
    summarize_typing,
    typing_counts,
    typing_scores,
)

MENTION_MARKER = "@"


def mark_mention(text: str, span: tuple[int, int]) -> tuple[str, int, int]:
    """``text`` with ``@`` before and after the mention (one space each side); returns it and the
    character offsets of the opening and the closing marker."""
    start, end = span
    left, mention, right = text[:start].rstrip(), text[start:end].strip(), text[end:].lstrip()
    prefix = f"{left} " if left else ""
    marked = f"{prefix}{MENTION_MARKER} {mention} {MENTION_MARKER}" + (f" {right}" if right else "")
    return marked, len(prefix), len(prefix) + len(mention) + 3


def encode_entity_typing(ex: EntityTypingExample, tokenizer, max_length: int,
                         linking: EntityLinking | None = None) -> dict:
    """``{"input_ids", "mention_pos"}``: tokens of the marked sentence and the first ``@`` token (and
    ``token_entities`` with ``linking``).

    A mention outside the text, an empty text, or a mention cut off by truncation is a
    :class:`DataError` naming ``ex.source``.
    """
    _check_fast(tokenizer)
    where = ex.source or "<example>"
    start, end = ex.span
    if not ex.text.strip():
        raise DataError(where, None, "empty text")
    if not (0 <= start < end <= len(ex.text)) or not ex.text[start:end].strip():
        raise DataError(where, None, f"mention span [{start}, {end}) is empty or outside the text (length {len(ex.text)})")
    marked, at, closing = mark_mention(ex.text, ex.span)
    enc = _tokenize(tokenizer, marked, max_length)
    first = last = -1
    for t, ((s, e), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special or s >= e:
            continue
        if s <= at < e:
            first = t
        if s <= closing < e:
            last = t
    if first < 0 or last < 0:
        raise DataError(where, None, f"mention cut off by truncation (max_length={max_length})")
    out = {"input_ids": list(enc["input_ids"]), "mention_pos": first}
    if linking is not None:
        rows = token_entities(enc["offset_mapping"], enc["special_tokens_mask"], len(marked),
                              linking.mentions(marked, []), linking.rows, linking.stats)
        linking.stats.instance([any(r >= 0 for r in rows[first + 1:last])])
        out["token_entities"] = rows
    return out


def _on(row: list[bool]) -> set[int]:
    return {i for i, on in enumerate(row) if on}


@register_objective
class EntityTyping(LinksMentions, Objective):
    name = "entity_typing"
    main_metric = "micro_f1"

    def __init__(self, feature_size: int, labels: list[str], dropout: float = 0.1, threshold: float = 0.0):
        super().__init__(feature_size)
        if not labels:
            raise ValueError("entity_typing needs a non-empty label list")
        self.vocab = LabelVocab.from_list(list(labels))
        self.threshold = float(threshold)
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_size, len(labels))

    @staticmethod
    def label_set(records: list) -> list[str]:
        return sorted({label for r in records for label in r.labels})

    def encode(self, record: EntityTypingExample, tokenizer, max_length: int) -> dict:
        feats = encode_entity_typing(record, tokenizer, max_length, linking=self.linking)
        if record.labels is None:  # a raw text to predict (model.predict), no gold
            return feats
        target = [0.0] * len(self.vocab)
        for label in record.labels:
            target[self.vocab.id(label, record.source)] = 1.0
        feats["labels"] = target
        return feats

    def kept_positions(self) -> tuple[str, ...]:
        return ("mention_pos",)

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        rows = torch.arange(features.shape[0], device=features.device)
        logits = self.classifier(self.dropout(features[rows, batch["mention_pos"]]))
        loss = None
        if "labels" in batch:
            loss = F.binary_cross_entropy_with_logits(logits, batch["labels"].to(logits.dtype))
        return ObjectiveOutput(loss, logits)

    def _sets(self, logits: torch.Tensor, batch: dict) -> tuple[list, list]:
        pred = (logits > self.threshold).tolist()
        gold = (batch["labels"] > 0.5).tolist()
        return [_on(r) for r in gold], [_on(r) for r in pred]

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        return typing_counts(*self._sets(logits, batch))

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return summarize_typing(counts)

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        labels = self.vocab.to_list()
        return [[labels[i] for i, on in enumerate(row) if on] for row in (logits > self.threshold).tolist()]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list(), "dropout": self._dropout_p, "threshold": self.threshold}

    def text_record(self, text: str, label=None, source: str = "text") -> EntityTypingExample:
        """``... @ mention @ ...`` → a typing record; ``label``: the gold type list (None: predict)."""
        plain, span = mention_span(text, source)
        return EntityTypingExample(plain, span, None if label is None else tuple(label), source)

    def scores(self, logits: torch.Tensor, batch: dict) -> list:
        """The probability of every type, {type: sigmoid(logit)} per example (multi-label)."""
        labels = self.vocab.to_list()
        return [dict(zip(labels, row)) for row in logits.float().sigmoid().tolist()]
