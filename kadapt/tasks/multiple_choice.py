"""Multiple choice (CosmosQA; K-Adapter §4.2): one row per candidate answer, scored on its first token.

Each choice is encoded as the pair (context, question + " " + answer) — K-Adapter's
``<s> context </s> question answer </s>`` ; all choices of an example go
through the model as rows of one (batch, choices, seq) input. Truncation takes tokens from the longer
of the two sides first (the context, in practice). A linear layer maps each row's first
token to a score; softmax over the choices. Metric: accuracy. Records without a label (the
CosmosQA test file) get predictions but are not scored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.records import MultipleChoiceExample
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)

IGNORE = -100


@register_objective
class MultipleChoice(Objective):
    name = "multiple_choice"
    main_metric = "accuracy"

    def __init__(self, feature_size: int, dropout: float = 0.1):
        super().__init__(feature_size)
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.scorer = nn.Linear(feature_size, 1)

    def encode(self, record: MultipleChoiceExample, tokenizer, max_length: int) -> dict:
        rows = [tokenizer(record.context, f"{record.question} {answer}", truncation="longest_first",
                          max_length=max_length) for answer in record.choices]
        return {"input_ids": [list(r["input_ids"]) for r in rows],
                "attention_mask": [list(r["attention_mask"]) for r in rows],
                "labels": IGNORE if record.label is None else record.label}

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        if features.dim() != 4:
            raise ValueError(f"multiple_choice expects (batch, choices, seq, features), got {tuple(features.shape)}")
        logits = self.scorer(self.dropout(features[:, :, 0])).squeeze(-1)
        loss = None
        if "labels" in batch and bool((batch["labels"] != IGNORE).any()):
            loss = F.cross_entropy(logits.float(), batch["labels"], ignore_index=IGNORE)
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        gold = batch["labels"]
        scored = gold != IGNORE
        return {"n": float(scored.sum()), "correct": float(((logits.argmax(-1) == gold) & scored).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"accuracy": safe_div(counts["correct"], counts["n"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return logits.argmax(-1).tolist()

    def config_dict(self) -> dict:
        return {"dropout": self._dropout_p}
