"""Helpers for the task-head tests: a head on the tiny backbone, batches, a few optimiser steps."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.compose import KnowledgeModel
from kadapt.data.encoding import collate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def head_model(tiny_backbone):
    """``head_model(name, config)`` → a KnowledgeModel (no plug-ins) with that task head, seeded."""
    from kadapt.objectives import build_objective

    def make(name: str, config: dict | None = None) -> KnowledgeModel:
        torch.manual_seed(0)
        model = KnowledgeModel(tiny_backbone)
        model.head = build_objective(name, model.feature_size, config or {})
        return model

    return make


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
