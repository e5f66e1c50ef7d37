"""JAKET infusion resumes exactly: per-step randomness is keyed to the step counter saved in the memory."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

import kadapt.runs.infuse
from kadapt.core.backbone import FrozenBackbone
from kadapt.runs.infuse import infuse
from kadapt.store.plugin_dir import load_plugin
from kadapt.runs.recipe import recipe_from_dict
from kadapt.runs.loop import train


class Interrupted(Exception):
    pass


def crash_at(step: int):
    def on_step(global_step: int, loss: float) -> None:
        if global_step == step:
            raise Interrupted
    return on_step

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"


def recipe(backbone_dir: Path, out: Path, epochs: int = 2):
    return recipe_from_dict({
        "kind": "infuse", "name": "jaket_resume", "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "jaket", "config": {"fanouts": [3, 3], "dropout": 0.0}},
        "objective": {"name": "jaket_pretraining", "config": {"mask_rate": 0.5, "random_negatives": 4}},
        "data": {"format": "kg", "train": str(TINY_KG), "dev_fraction": 0.2, "max_length": 32},
        "training": {"epochs": epochs, "batch_size": 4, "lr": 0.01, "seed": 0, "save_every": 2},
        "output": {"dir": str(out)},
    })


def test_resumed_infusion_equals_uninterrupted(tiny_backbone_dir, tmp_path, monkeypatch):
    """12 training triples, batch 4: 3 steps per epoch; killed in step 5, resumed from step 4 (mid-epoch 2)."""
    backbone_dir = tiny_backbone_dir("bert")
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    straight = infuse(recipe(backbone_dir, tmp_path / "a"), backbone=backbone)
    monkeypatch.setattr(kadapt.runs.infuse, "train", functools.partial(train, on_step=crash_at(5)))
    with pytest.raises(Interrupted):
        infuse(recipe(backbone_dir, tmp_path / "b"), backbone=backbone)
    monkeypatch.undo()
    resumed = infuse(recipe(backbone_dir, tmp_path / "b"), backbone=backbone, resume=True)
    a, b = load_plugin(straight.plugin_dir, backbone), load_plugin(resumed.plugin_dir, backbone)
    assert all(torch.equal(x, y) for x, y in zip(a.plugin.state_dict().values(), b.plugin.state_dict().values()))
    assert torch.equal(a.memory["steps"], b.memory["steps"]) and int(a.memory["steps"]) == 6
    assert straight.train.final_dev == resumed.train.final_dev
