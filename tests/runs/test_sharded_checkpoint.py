"""FSDP checkpoints without pickle, 2 gloo processes (FSDP2 runs on CPU/gloo with torch 2.13).

A model with uneven first dimensions is sharded, trained two steps, and saved both ways at the same
state; the sharded checkpoint, consolidated offline, equals the consolidated one tensor for tensor
(and the trained full weights). A sharded checkpoint refuses another world size in one line that
says how to proceed; a consolidated one loads into an unsharded model in one process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ddp_kit import spawn_gloo


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList([nn.Linear(6, 5), nn.Linear(5, 7)])
        self.head = nn.Linear(7, 3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.frozen(self.head(x))


def _optimizer(model):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def _train(model, opt, sched, rank: int, world: int):
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        x = torch.randn(4, 6, generator=gen)
        x = x[rank * 4 // world:(rank + 1) * 4 // world]
        model(x).pow(2).mean().backward()
        opt.step(), sched.step(), opt.zero_grad()


def _two_ranks(rank: int, world: int, out: str) -> None:
    from kadapt.runs.sharded_checkpoint import save_fsdp_checkpoint
    from kadapt.runs.sharding import shard_model, unshard_model
    from kadapt.core.fileio import save_tensors

    model = Tiny()
    shard_model(model, torch.device("cpu"))
    assert type(model.layers[0].weight).__name__ == "DTensor"
    opt, sched = _optimizer(model)
    _train(model, opt, sched, rank, world)
    for fmt in ("sharded", "consolidated"):
        save_fsdp_checkpoint(Path(out, fmt), module=model, optimizer=opt, scheduler=sched,
                             trainer_state={"global_step": 2}, fmt=fmt)
    unshard_model(model)
    assert type(model).__name__ == "Tiny" and type(model.layers[0].weight) is nn.Parameter
    if rank == 0:
        save_tensors(Path(out, "full.safetensors"), {k: v for k, v in model.state_dict().items()})


@pytest.mark.slow  # 2 spawned processes (25-40 s on the shared 2-core machine)
def test_sharded_checkpoint_consolidates_to_the_consolidated_one(tmp_path):
    from kadapt.core.fileio import load_tensors
    from kadapt.runs.sharded_checkpoint import ShardedCheckpointError, consolidate_checkpoint, load_fsdp_checkpoint

    spawn_gloo(_two_ranks, 2, str(tmp_path))
    sharded, whole = tmp_path / "sharded", tmp_path / "consolidated"
    assert (sharded / "trainable-rank1.safetensors").exists() and not (sharded / "trainable.safetensors").exists()
    model = Tiny()
    opt, sched = _optimizer(model)
    with pytest.raises(ShardedCheckpointError) as err:
        load_fsdp_checkpoint(sharded, module=model, optimizer=opt, scheduler=sched)
    assert str(err.value) == (f"{sharded}: checkpoint is sharded over 2 processes, this run has 1; resume with 2 "
                              f"processes and training.sharding: fsdp, or consolidate it first: "
                              f"kadapt checkpoint consolidate {sharded}")
    consolidate_checkpoint(sharded)
    for name in ("trainable.safetensors", "optimizer.safetensors"):
        a, _ = load_tensors(sharded / name)
        b, _ = load_tensors(whole / name)
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), name
    full, _ = load_tensors(tmp_path / "full.safetensors")
    weights, _ = load_tensors(whole / "trainable.safetensors")
    assert sorted(weights) == ["head.bias", "head.weight", "layers.0.bias", "layers.0.weight", "layers.1.bias",
                               "layers.1.weight"]
    assert all(torch.equal(weights[k], full[k]) for k in weights)
    assert json.loads((sharded / "sharding.json").read_text())["format"] == "consolidated"
    # the consolidated checkpoint resumes in one process, without sharding: the exact saved state
    state = load_fsdp_checkpoint(sharded, module=model, optimizer=opt, scheduler=sched)
    assert state == {"global_step": 2}
    assert all(torch.equal(model.state_dict()[k], full[k]) for k in full)
    exp_avg = opt.state[model.layers[1].weight]["exp_avg"]
    assert exp_avg.shape == (7, 5) and torch.equal(exp_avg, load_tensors(whole / "optimizer.safetensors")[0]["layers.1.weight|exp_avg"])
    with pytest.raises(ShardedCheckpointError, match="already consolidated"):
        consolidate_checkpoint(sharded)
