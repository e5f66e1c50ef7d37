"""Helpers for the task-head tests (not a test module)."""
from __future__ import annotations

import torch

from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate


def batch_of(model: KnowledgeModel, records: list, max_length: int = 64) -> dict:
    tok = model.backbone.tokenizer
    return collate([model.head.encode(r, tok, max_length) for r in records], tok.pad_token_id)


def fit(model: KnowledgeModel, batch: dict, steps: int = 30, lr: float = 1e-2) -> list[float]:
    """Full-batch AdamW steps on the head; returns the losses."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
