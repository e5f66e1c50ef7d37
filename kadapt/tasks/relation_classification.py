"""Relation classification with ``@``/``#`` entity markers (K-Adapter factual objective, §3.3).

The features at the first ``@`` (subject) and first ``#`` (object) marker are concatenated and
classified (``pooling="marker"``, the anchor code's choice and the default). ``pooling="mean"`` uses
the mean of each entity's tokens between its markers instead — the paper's wording ("the pooling layer
is applied to the input representations of the given entities"); it learns pair-level facts much faster
over weak backbones because no attention from the marker to the entity has to be learned first. Metrics: accuracy and micro-F1 over the labels other than ``no_relation_label`` (the
TACRED convention; with no such label micro-F1 equals accuracy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import LabelVocab, encode_relation
from kadapt.data.markup import relation_spans
from kadapt.data.records import RelationExample
from kadapt.tasks.linked_mentions import LinksMentions
from kadapt.core.objective import Objective, ObjectiveOutput, register_objective, safe_div


@register_objective
class RelationClassification(LinksMentions, Objective):
    name = "relation_classification"
    main_metric = "micro_f1"

    def __init__(self, feature_size: int, labels: list[str], dropout: float = 0.1,
                 no_relation_label: str | None = None, pooling: str = "marker"):
        super().__init__(feature_size)
        if pooling not in ("marker", "mean"):
            raise ValueError(f"pooling must be 'marker' or 'mean', got {pooling!r}")
        self.pooling = pooling
        if not labels:
            raise ValueError("relation_classification needs a non-empty label list")
        self.vocab = LabelVocab.from_list(list(labels))
        self.no_relation_label = no_relation_label
        self.no_relation_id = self.vocab.to_list().index(no_relation_label) if no_relation_label in labels else -1
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * feature_size, len(labels))
        self._dropout_p = dropout

    @staticmethod
    def label_set(records: list) -> list[str]:
        return sorted({r.label for r in records})

    def encode(self, record: RelationExample, tokenizer, max_length: int) -> dict:
        feats = encode_relation(record, tokenizer, max_length, linking=self.linking)
        if record.label is not None:  # None: a raw text to predict (model.predict), no gold
            feats["labels"] = self.vocab.id(record.label, record.source)
        return feats

    def text_record(self, text: str, label=None, source: str = "text") -> RelationExample:
        """``@ subject @ ... # object #`` (or ``<e1>…</e1> … <e2>…</e2>``) → a relation record."""
        plain, subj, obj = relation_spans(text, source)
        return RelationExample(plain, subj, obj, label, source)

    def kept_positions(self) -> tuple[str, ...] | None:
        return ("subj_pos", "obj_pos") if self.pooling == "marker" else None

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        pair = torch.cat([self._entity(features, batch, "subj"), self._entity(features, batch, "obj")], dim=-1)
        logits = self.classifier(self.dropout(pair))
        loss = F.cross_entropy(logits, batch["labels"]) if "labels" in batch else None
        return ObjectiveOutput(loss, logits)

    def _entity(self, features: torch.Tensor, batch: dict, which: str) -> torch.Tensor:
        start = batch[f"{which}_pos"]
        if self.pooling == "marker":
            return features[torch.arange(features.shape[0], device=features.device), start]
        positions = torch.arange(features.shape[1], device=features.device)[None, :]
        inside = (positions > start[:, None]) & (positions < batch[f"{which}_end"][:, None])
        weights = inside.to(features.dtype)
        return (features * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        pred, gold = logits.argmax(-1), batch["labels"]
        na = self.no_relation_id
        return {
            "n": float(gold.numel()),
            "correct": float((pred == gold).sum()),
            "tp": float(((pred == gold) & (gold != na)).sum()),
            "pred_pos": float((pred != na).sum()),
            "gold_pos": float((gold != na).sum()),
        }

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        p = safe_div(counts["tp"], counts["pred_pos"])
        r = safe_div(counts["tp"], counts["gold_pos"])
        return {
            "accuracy": safe_div(counts["correct"], counts["n"]),
            "precision": p,
            "recall": r,
            "micro_f1": safe_div(2 * p * r, p + r),
        }

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        labels = self.vocab.to_list()
        return [labels[i] for i in logits.argmax(-1).tolist()]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list(), "dropout": self._dropout_p,
                "no_relation_label": self.no_relation_label, "pooling": self.pooling}
