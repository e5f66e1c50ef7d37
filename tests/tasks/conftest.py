"""Helpers for the task-head tests: a head on the tiny backbone, batches, a few optimiser steps."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.core.model import KnowledgeModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def head_model(tiny_backbone):
    """``head_model(name, config)`` → a KnowledgeModel (no plug-ins) with that task head, seeded."""
    from kadapt.core.objective import build_objective

    def make(name: str, config: dict | None = None, backbone_mode: str = "frozen") -> KnowledgeModel:
        """``backbone_mode="full"``: the backbone trains too (first-token heads barely separate inputs
        over a frozen RANDOM tiny backbone, whose [CLS] states are nearly constant)."""
        from kadapt.runs.recipe import FinetuneSection
        from kadapt.runs.finetune import build_model

        torch.manual_seed(0)
        model = build_model(tiny_backbone, [], FinetuneSection(backbone=backbone_mode))
        model.head = build_objective(name, model.feature_size, config or {})
        return model

    return make
