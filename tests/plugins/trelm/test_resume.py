"""TRELM infusion resumes bit-exactly with per-batch routing, the fresh-Adam neuron clock and the memory bank."""
from __future__ import annotations

import functools

import pytest
import torch

import kadapt.runs.infuse
from kadapt.core.backbone import FrozenBackbone
from kadapt.runs.infuse import infuse
from kadapt.runs.loop import train
from kadapt.runs.recipe import recipe_from_dict
from kadapt.store.plugin_dir import load_plugin


class Interrupted(Exception):
    pass


def crash_at(step: int):
    def on_step(global_step: int, loss: float) -> None:
        if global_step == step:
            raise Interrupted
    return on_step


def recipe(world, backbone_dir, out):
    return recipe_from_dict({
        "kind": "infuse", "name": "trelm_resume", "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "trelm", "config": {"neurons_per_layer": [8], "routing": "per_batch",
                                               "attribution": "grad_x_act", "routing_warmup_steps": 1,
                                               "attribution_rows": 4, "memory_slots": 64, "memory_window": 4}},
        "objective": {"name": "trelm_knowledge", "config": {"num_negatives": 5}},
        "data": {"format": "trex_rc", "train": str(world["infuse_factual_train"]),
                 "dev": str(world["infuse_factual_dev"]), "max_length": 48, "limit": 24},
        "training": {"epochs": 2, "batch_size": 8, "lr": 0.01, "seed": 0, "save_every": 2},
        "output": {"dir": str(out)},
    })


def test_resumed_trelm_infusion_equals_uninterrupted(world, backbone_dir, tmp_path, monkeypatch):
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    straight = infuse(recipe(world, backbone_dir, tmp_path / "a"), backbone=backbone)
    monkeypatch.setattr(kadapt.runs.infuse, "train", functools.partial(train, on_step=crash_at(4)))
    with pytest.raises(Interrupted):
        infuse(recipe(world, backbone_dir, tmp_path / "b"), backbone=backbone)
    monkeypatch.undo()
    resumed = infuse(recipe(world, backbone_dir, tmp_path / "b"), backbone=backbone, resume=True)
    a, b = load_plugin(straight.plugin_dir, backbone), load_plugin(resumed.plugin_dir, backbone)
    for (key, x), y in zip(a.plugin.state_dict().items(), b.plugin.state_dict().values()):
        assert torch.equal(x, y), key
    assert set(a.memory) == set(b.memory) and all(torch.equal(a.memory[k], b.memory[k]) for k in a.memory)
    assert int(a.plugin.selections) == 5  # 6 steps, per-batch selection from step 1
