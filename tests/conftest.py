"""Shared fixtures: tiny backbones built from configs (no downloads) and the real-data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spin-waiting
# makes a small matmul ~100x slower (measured: 25 ms vs 0.23 ms); one thread keeps tests fast.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CORPUS = [
    "Barack Obama was born in Hawaii .",
    "The quick brown fox jumps over the lazy dog .",
    "Paris is the capital of France and Berlin is the capital of Germany .",
    "Marie Curie worked in Paris with Pierre Curie .",
    "Obama studied at Columbia University in New York .",
    "She reads books about unbelievable transformations .",
    "@ # [MASK] records mention the city together with the country .",
] * 5


def shared_data_dir() -> Path:
    env = os.environ.get("KADAPT_DATA_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
    """Factory: ``tiny_backbone_dir("roberta")`` → folder with config, weights and tokenizer (cached)."""
    from kadapt.testing.tiny import build_tiny_backbone

    made: dict[tuple, Path] = {}

    def make(model_type: str = "bert", **kwargs) -> Path:
        key = (model_type, tuple(sorted(kwargs.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"tiny-{model_type}")
            build_tiny_backbone(out, model_type, CORPUS, **kwargs)
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbone_dir):
    from kadapt.core.backbone import FrozenBackbone

    return FrozenBackbone.from_pretrained(tiny_backbone_dir("bert"))


# The small generated world and 2-layer backbone shared by the training/infusion/CLI tests
# (module scope: each test module gets fresh objects, as before).
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from run_kit import small_world

    return small_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def backbone_dir(tiny_backbone_dir):
    from run_kit import BACKBONE_KW

    return tiny_backbone_dir("bert", **BACKBONE_KW)


@pytest.fixture(scope="module")
def backbone(backbone_dir):
    from kadapt.core.backbone import FrozenBackbone

    return FrozenBackbone.from_pretrained(backbone_dir)
