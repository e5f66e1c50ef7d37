"""Full fine-tuning of the backbone (``finetune.backbone: full``) on 2 CPU processes: FSDP2 with
gradient checkpointing trains like DDP without it (same losses, same tuned backbone weights, same
test metrics). Dropout stays on: recomputation replays each rank's RNG."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ddp_kit import _free_port, _run
from run_kit import BACKBONE_KW, finetune_recipe, small_world, train_losses, write_yaml


def _launch2(recipe: Path, out: Path) -> None:
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
          "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "kadapt.cli.app",
          "finetune", str(recipe), "--out", str(out)], cwd=out.parent)


@pytest.mark.slow
def test_fsdp_with_gradient_checkpointing_matches_ddp(tiny_backbone_dir, tmp_path):
    from kadapt.core.fileio import load_tensors

    world = small_world(tmp_path / "world")
    backbone = tiny_backbone_dir("bert", **BACKBONE_KW)
    runs = {}
    for name, training in (("ddp", {}), ("fsdp", {"sharding": "fsdp", "gradient_checkpointing": True})):
        data = finetune_recipe(world, backbone, tmp_path / "unused", epochs=1, batch_size=8, **training)
        data["finetune"] = {"backbone": "full"}
        runs[name] = tmp_path / name
        _launch2(write_yaml(tmp_path / f"{name}.yaml", data), runs[name])
    a, b = train_losses(runs["ddp"]), train_losses(runs["fsdp"])
    assert len(a) == len(b) >= 2 and max(abs(x - y) for x, y in zip(a, b)) < 1e-6, list(zip(a, b))
    ddp, _ = load_tensors(runs["ddp"] / "backbone.safetensors")
    fsdp, _ = load_tensors(runs["fsdp"] / "backbone.safetensors")
    assert sorted(ddp) == sorted(fsdp) and len(ddp) > 20
    assert max((ddp[k] - fsdp[k]).abs().max().item() for k in ddp) < 1e-6
    metrics = [json.loads((runs[n] / "metrics.json").read_text()) for n in ("ddp", "fsdp")]
    assert metrics[0]["test"] == metrics[1]["test"]
