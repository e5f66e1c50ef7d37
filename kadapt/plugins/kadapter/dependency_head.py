"""Dependency head prediction (K-Adapter linguistic objective, §3.4 / App. B.2).

Every first sub-token classifies the position of its head word's first sub-token with a linear layer
over positions (``max_length`` outputs, as the paper's "linear layer to each token"); positions beyond
the sequence are masked out. Cross-entropy over positions (the anchor code's choice; the paper text
says BCEWithLogits). Root attaches to position 0. Metric: unlabelled attachment accuracy (UAS).

``head: reference`` switches to the reference code's head (``lin-adapter.py``): a dense layer over the
features (``[backbone_last ; adapter]`` → half their width, the backbone's hidden size for K-Adapter),
one-head self-attention over the non-padding tokens with BERT's output block (dense, dropout, residual
LayerNorm, eps 1e-5), then dense → dropout → the position scorer. Targets stay kadapt's in both
variants: the reference's labels are shifted by one and it silently drops sentences, which is a defect,
not a setting (README "Deviations").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import encode_dependency
from kadapt.data.records import DependencyExample
from kadapt.core.objective import Objective, ObjectiveOutput, safe_div

IGNORE = -100
HEADS = ("paper", "reference")


class ReferenceBlock(nn.Module):
    """The reference head's layers before its scorer: ``dense(dropout(LN(x + dropout(attn(x)))))``
    with ``x = com_dense(features)`` and one-head self-attention that ignores padding keys."""

    def __init__(self, feature_size: int, width: int, dropout: float):
        super().__init__()
        self.com_dense = nn.Linear(feature_size, width)
        self.attention = nn.MultiheadAttention(width, 1, dropout=dropout, batch_first=True)
        self.attention_dropout = nn.Dropout(dropout)
        self.attention_norm = nn.LayerNorm(width, eps=1e-5)
        self.dense = nn.Linear(width, width)

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.com_dense(features)
        attended, _ = self.attention(x, x, x, key_padding_mask=~valid, need_weights=False)
        x = self.attention_norm(x + self.attention_dropout(attended))
        return self.dense(x)


class DependencyHeadPrediction(Objective):
    name = "dependency_head"
    main_metric = "uas"

    def __init__(self, feature_size: int, max_length: int = 128, dropout: float = 0.1, head: str = "paper"):
        super().__init__(feature_size)
        if head not in HEADS:
            raise ValueError(f"dependency_head: head must be one of {list(HEADS)}, got {head!r}")
        self.max_length = max_length
        self._dropout_p = dropout
        self.head_variant = head
        self.dropout = nn.Dropout(dropout)
        width = feature_size
        if head == "reference":
            width = feature_size // 2
            self.reference_block = ReferenceBlock(feature_size, width, dropout)
        self.scorer = nn.Linear(width, max_length)

    def encode(self, record: DependencyExample, tokenizer, max_length: int) -> dict:
        feats = encode_dependency(record, tokenizer, min(max_length, self.max_length))
        feats["labels"] = feats.pop("head_positions")
        return feats

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        seq = features.shape[1]
        if self.head_variant == "reference":
            features = self.reference_block(features, batch["attention_mask"].bool())
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
        return {"max_length": self.max_length, "dropout": self._dropout_p, "head": self.head_variant}
