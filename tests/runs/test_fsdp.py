"""FSDP infusion under ``accelerate launch`` with 2 CPU processes (gloo): FSDP2 units over the
processes reproduce the one-process loss curve; a sharded checkpoint resumes bit-exactly on 2
processes, is refused on 1 with a line saying how to proceed, and after ``kadapt checkpoint
consolidate`` resumes on 1 process continuing the same curve. DeepSpeed is refused in one line."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp_kit import LAUNCHER, _env, _free_port, _run
from run_kit import BACKBONE_KW, factual_recipe, small_world, train_losses, write_yaml


def _launch2(recipe: Path, out: Path, *extra: str) -> None:
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
          "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(LAUNCHER), str(recipe),
          str(out), *extra], cwd=out.parent)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kadapt", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=240)


def _weights(run: Path) -> dict:
    from kadapt.core.fileio import load_tensors

    return {f"{f}:{k}": v for f in ("model", "objective_heads")
            for k, v in load_tensors(run / "plugin" / f"{f}.safetensors")[0].items()}


def _from_step_3(run: Path, copy: Path) -> Path:
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "plugin")
    for later in sorted((copy / "checkpoints").iterdir())[1:]:
        shutil.rmtree(later)
    return copy


@pytest.mark.slow
def test_fsdp_two_processes_sharded_checkpoints_and_resume(tiny_backbone_dir, tmp_path):
    world = small_world(tmp_path / "world")
    backbone = tiny_backbone_dir("bert", **BACKBONE_KW)
    data = factual_recipe(world, backbone, tmp_path / "unused", limit=32, epochs=2, batch_size=8,
                          adapter={"dropout": 0.0}, log_every=1, save_every=3, keep_checkpoints=10,
                          sharding="fsdp", checkpoint_format="sharded")
    data["objective"]["config"] = {"dropout": 0.0}
    recipe = write_yaml(tmp_path / "recipe.yaml", data)
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(LAUNCHER), str(recipe), str(one)], cwd=tmp_path)
    _launch2(recipe, two)
    a, b = train_losses(one), train_losses(two)
    assert len(a) == len(b) == 8
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b)) < 1e-5, list(zip(a, b))
    step3 = two / "checkpoints" / "step-0000003"
    assert {p.name for p in step3.glob("trainable-rank*")} == {"trainable-rank0.safetensors", "trainable-rank1.safetensors"}
    full, sharded = _weights(one), _weights(two)
    assert all(torch.allclose(full[k], sharded[k], atol=1e-6) for k in full)

    resumed = _from_step_3(two, tmp_path / "resumed")
    _launch2(recipe, resumed, "--resume")
    assert all(torch.equal(v, _weights(resumed)[k]) for k, v in sharded.items())  # bit-exact, same world size

    other = _from_step_3(two, tmp_path / "other")
    ckpt = other / "checkpoints" / "step-0000003"
    refused = _cli("infuse", str(recipe), "--out", str(other), "--resume", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"kadapt: error: {ckpt}: checkpoint is sharded over 2 processes, this run has 1; resume with 2 processes and "
        f"training.sharding: fsdp, or consolidate it first: kadapt checkpoint consolidate {ckpt}")
    done = _cli("checkpoint", "consolidate", str(ckpt), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"{ckpt}: consolidated (resumes on any number of processes)"
    assert _cli("infuse", str(recipe), "--out", str(other), "--resume", cwd=tmp_path).returncode == 0
    c = train_losses(other)
    assert c[:3] == b[:3] and max(abs(x - y) / abs(x) for x, y in zip(b, c)) < 1e-5


def test_deepspeed_is_refused_in_one_line(world, backbone_dir, tmp_path, capsys):
    from kadapt.cli.app import main

    recipe = write_yaml(tmp_path / "recipe.yaml", factual_recipe(world, backbone_dir, tmp_path / "run",
                                                                 sharding="deepspeed"))
    assert main(["infuse", str(recipe)]) == 2
    assert capsys.readouterr().err.strip() == (
        "kadapt: error: training.sharding: deepspeed is not supported by kadapt (DeepSpeed does not install beside "
        "torch 2.13 here and its ZeRO checkpoints are pickled); use training.sharding: fsdp (FSDP2: ZeRO-3-style "
        "sharding with safetensors checkpoints)")
    assert not (tmp_path / "run").exists()
    bad = write_yaml(tmp_path / "bad.yaml", factual_recipe(world, backbone_dir, tmp_path / "run", sharding="zero3"))
    assert main(["infuse", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kadapt: error: {bad}: key 'training.sharding' is 'zero3'; use one of ['none', 'fsdp', 'deepspeed']")
