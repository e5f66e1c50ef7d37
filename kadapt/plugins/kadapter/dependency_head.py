"""Dependency head prediction (K-Adapter linguistic objective, §3.4 / App. B.2).

Every first sub-token classifies the position of its head word's first sub-token with a linear layer
over positions (``max_length`` outputs, as the paper's "linear layer to each token"); positions beyond
the sequence are masked out. Cross-entropy over positions (the anchor code's choice; the paper text
says BCEWithLogits). Root attaches to position 0. Metric: unlabelled attachment accuracy (UAS).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import encode_dependency
from kadapt.data.records import DependencyExample
from kadapt.core.objective import Objective, ObjectiveOutput, safe_div

IGNORE = -100


class DependencyHeadPrediction(Objective):
    name = "dependency_head"
    main_metric = "uas"

    def __init__(self, feature_size: int, max_length: int = 128, dropout: float = 0.1):
        super().__init__(feature_size)
        self.max_length = max_length
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.scorer = nn.Linear(feature_size, max_length)

    def encode(self, record: DependencyExample, tokenizer, max_length: int) -> dict:
        feats = encode_dependency(record, tokenizer, min(max_length, self.max_length))
        feats["labels"] = feats.pop("head_positions")
        return feats

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        seq = features.shape[1]
        logits = self.scorer(self.dropout(features))[:, :, :seq]
        valid = batch["attention_mask"].bool()[:, None, :]
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        loss = None
        if "labels" in batch:
            loss = F.cross_entropy(logits.reshape(-1, seq).float(), batch["labels"].reshape(-1), ignore_index=IGNORE)
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        gold = batch["labels"]
        scored = gold != IGNORE
        return {"tokens": float(scored.sum()), "correct": float(((logits.argmax(-1) == gold) & scored).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"uas": safe_div(counts["correct"], counts["tokens"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        pred = logits.argmax(-1)
        return [p[g != IGNORE].tolist() for p, g in zip(pred, batch["labels"])]

    def config_dict(self) -> dict:
        return {"max_length": self.max_length, "dropout": self._dropout_p}
