"""Data-parallel infusion: 2 CPU processes (gloo) reproduce the single-process loss curve.

``accelerate launch --multi_gpu --num_processes 2`` starts two CPU processes on gloo (``--cpu
--num_processes 2`` would start only one). With ``split_batches`` both runs see the same global
batches; dropout is off so the only differences are floating-point reduction order.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ddp_kit import LAUNCHER, _free_port, _run
from run_kit import BACKBONE_KW, factual_recipe, small_world, train_losses, write_yaml


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tiny_backbone_dir, tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    world = small_world(tmp_path / "world")
    backbone = tiny_backbone_dir("bert", **BACKBONE_KW)
    # 32 examples = 4 global batches of 8 per epoch; each process gets 4 of every batch of 8
    data = factual_recipe(world, backbone, tmp_path / "unused", limit=32, epochs=2, batch_size=8,
                          adapter={"dropout": 0.0}, log_every=1, save_every=3)
    data["objective"]["config"] = {"dropout": 0.0}
    recipe = write_yaml(tmp_path / "recipe.yaml", data)

    one = tmp_path / "one"
    _run([sys.executable, str(LAUNCHER), str(recipe), str(one)], cwd=tmp_path)
    two = tmp_path / "two"
    _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
          str(LAUNCHER), str(recipe), str(two)], cwd=tmp_path)

    a, b = train_losses(one), train_losses(two)
    assert len(a) == len(b) == 8  # 2 epochs x 4 optimizer steps, every step logged
    diffs = [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)]
    worst = max(abs(x - y) for x, y in zip(a, b))
    print(f"\nDDP vs single-process loss curve: max |diff| {worst:.3e}, max relative {max(diffs):.3e}")
    assert max(diffs) < 1e-4, list(zip(a, b))
    assert a[-1] < a[0]
    # both wrote a complete plug-in; two processes left one RNG state each in their checkpoints
    for run in (one, two):
        assert (run / "plugin" / "kadapt_config.json").exists()
    last = sorted((two / "checkpoints").iterdir())[-1]
    assert {p.name for p in last.glob("rng-rank*.safetensors")} == {"rng-rank0.safetensors", "rng-rank1.safetensors"}
    dev_one = [r for r in map(json.loads, (one / "metrics.jsonl").read_text().splitlines()) if r["split"] == "dev"]
    dev_two = [r for r in map(json.loads, (two / "metrics.jsonl").read_text().splitlines()) if r["split"] == "dev"]
    assert len(dev_one) == len(dev_two) == 2
    for r1, r2 in zip(dev_one, dev_two):
        assert r1["step"] == r2["step"]
