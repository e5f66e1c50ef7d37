"""Checkpoints of FSDP runs (``training.sharding: fsdp``), pickle-free like every kadapt checkpoint.

``training.checkpoint_format: consolidated`` (default): the main process writes full tensors,
``trainable.safetensors`` (the same keys as a DDP checkpoint) and ``optimizer.safetensors`` keyed by
parameter NAME (``<name>|exp_avg``); such a checkpoint resumes on any number of processes, sharded or
not. ``sharded``: every process writes its own shards (``trainable-rank<r>.safetensors``,
``optimizer-rank<r>.safetensors``; FSDP2 shards dim 0 in rank order), no process ever holds the full
state; it resumes bit-exactly on the SAME number of processes, or after
:func:`consolidate_checkpoint` (``kadapt checkpoint consolidate FOLDER``) on any. ``sharding.json``
records the format, the world size and each tensor's global shape; ``trainer_state.json`` is still
written last.
"""
from __future__ import annotations

from pathlib import Path

import torch

from kadapt.core import distributed as dist
from kadapt.core.errors import KadaptError
from kadapt.core.fileio import atomic_write_json, load_tensors, read_json, save_tensors
from kadapt.runs.checkpoint import (EXTRA_STATE_SEP, STATE_FILE, _jsonable, resumable_state, restore_schedule_and_rng,
                                    rng_to_files)

SHARDING_FILE = "sharding.json"
SEP = "|"


class ShardedCheckpointError(KadaptError):
    """A sharded checkpoint cannot be resumed as asked."""


def _options(full: bool, **kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, strict=False, **kw)


def _local(value):
    from torch.distributed.tensor import DTensor

    return value.to_local() if isinstance(value, DTensor) else value


def _is_dtensor(value) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def _optimizer_files(osd: dict) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors, JSON meta, layout) of a name-keyed optimizer state dict."""
    tensors, scalars, layout = {}, {}, {}
    for name, entry in osd.get("state", {}).items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{name}{SEP}{key}"] = _local(value).detach().contiguous().cpu()
                layout[f"{name}{SEP}{key}"] = {"shape": list(value.shape), "sharded": _is_dtensor(value)}
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, {"param_groups": osd.get("param_groups", []), "scalars": scalars, "keyed_by": "name"}, layout


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict] = {}
    for key, value in tensors.items():
        name, field = key.rsplit(SEP, 1)
        state.setdefault(name, {})[field] = value
    for name, entry in meta["scalars"].items():
        state.setdefault(name, {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_fsdp_checkpoint(folder: Path, *, module, optimizer, scheduler, trainer_state: dict, fmt: str) -> None:
    """Write a consolidated or sharded checkpoint of a sharded ``module`` (call on every rank)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank, is_main = dist.rank(), dist.rank() == 0
    folder.mkdir(parents=True, exist_ok=True)
    if is_main:
        (folder / STATE_FILE).unlink(missing_ok=True)
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    rng_tensors, rng_meta = rng_to_files()
    save_tensors(folder / f"rng-rank{rank}.safetensors", rng_tensors)
    atomic_write_json(folder / f"rng-rank{rank}.json", rng_meta)
    full = fmt == "consolidated"
    msd, osd = get_state_dict(module, optimizer, options=_options(full, cpu_offload=full))
    weights = {k: _local(v).detach().contiguous().cpu() for k, v in msd.items() if k not in frozen}
    layout = {k: {"shape": list(v.shape), "sharded": _is_dtensor(v)} for k, v in msd.items() if k not in frozen}
    opt_tensors, opt_meta, opt_layout = _optimizer_files(osd)
    extra = {k: v for k, v in resumable_state(module).items() if EXTRA_STATE_SEP in k}  # kept apart, not sharded
    if not full:
        save_tensors(folder / f"trainable-rank{rank}.safetensors", weights)
        save_tensors(folder / f"optimizer-rank{rank}.safetensors", opt_tensors)
    dist.barrier()
    if not is_main:
        return
    if full:
        save_tensors(folder / "trainable.safetensors", {**weights, **extra})
        save_tensors(folder / "optimizer.safetensors", opt_tensors)
    else:
        save_tensors(folder / "extra.safetensors", extra)
    atomic_write_json(folder / "optimizer.json", opt_meta)
    atomic_write_json(folder / "scheduler.json", _jsonable(scheduler.state_dict()))
    atomic_write_json(folder / SHARDING_FILE, {"format": fmt, "world_size": dist.world_size(),
                                               "weights": layout, "optimizer": opt_layout})
    atomic_write_json(folder / STATE_FILE, trainer_state)


def _sharded(local: dict[str, torch.Tensor], layout: dict, mesh) -> dict:
    from torch.distributed.tensor import DTensor, Shard

    out = {}
    for key, value in local.items():
        if not layout[key]["sharded"]:
            out[key] = value
            continue
        shape = torch.Size(layout[key]["shape"])
        stride = torch.empty(shape, device="meta").stride()
        out[key] = DTensor.from_local(value.to(mesh.device_type), mesh, [Shard(0)], run_check=False, shape=shape,
                                      stride=stride)
    return out


def load_fsdp_checkpoint(folder: Path, *, module, optimizer, scheduler) -> dict:
    """Restore a checkpoint written by :func:`save_fsdp_checkpoint` into ``module`` (sharded or not)."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    from kadapt.runs.sharding import is_sharded

    info = read_json(folder / SHARDING_FILE, "sharding layout")
    rank, world = dist.rank(), dist.world_size()
    sharded = info["format"] == "sharded"
    if sharded and (info["world_size"] != world or not is_sharded(module)):
        this = (f"this run has {world}" if info["world_size"] != world
                else "this run does not shard (training.sharding: fsdp needs several processes)")
        raise ShardedCheckpointError(
            f"{folder}: checkpoint is sharded over {info['world_size']} processes, {this}; resume with "
            f"{info['world_size']} processes and training.sharding: fsdp, or consolidate it first: "
            f"kadapt checkpoint consolidate {folder}")
    state = read_json(folder / STATE_FILE, "trainer state")
    opt_meta = read_json(folder / "optimizer.json")
    if sharded:
        weights, _ = load_tensors(folder / f"trainable-rank{rank}.safetensors")
        extra, _ = load_tensors(folder / "extra.safetensors")
        opt_tensors, _ = load_tensors(folder / f"optimizer-rank{rank}.safetensors")
        mesh = next(p for p in module.parameters() if _is_dtensor(p)).device_mesh
        weights, opt_tensors = _sharded(weights, info["weights"], mesh), _sharded(opt_tensors, info["optimizer"], mesh)
    else:
        everything, _ = load_tensors(folder / "trainable.safetensors")
        weights = {k: v for k, v in everything.items() if EXTRA_STATE_SEP not in k}
        extra = {k: v for k, v in everything.items() if EXTRA_STATE_SEP in k}
        opt_tensors, _ = load_tensors(folder / "optimizer.safetensors")
    own = set(resumable_state(module))
    if set(weights) | set(extra) != own:
        found = set(weights) | set(extra)
        raise KadaptError(f"{folder}: checkpoint weights do not match the model being resumed "
                          f"(missing {sorted(own - found)[:3]}, unexpected {sorted(found - own)[:3]})")
    set_state_dict(module, optimizer, model_state_dict=weights, optim_state_dict=_optimizer_state(opt_tensors, opt_meta),
                   options=_options(not sharded))
    if extra:
        module.load_extra_tensors(extra)
    restore_schedule_and_rng(folder, scheduler, rank)
    return state


def consolidate_checkpoint(folder: str | Path) -> Path:
    """Turn a sharded checkpoint into a consolidated one in place (one process, no process group):
    shards are joined along dim 0 in rank order. It then resumes on any number of processes."""
    folder = Path(folder)
    info = read_json(folder / SHARDING_FILE, "sharding layout")
    if info["format"] != "sharded":
        raise ShardedCheckpointError(f"{folder}: checkpoint is already consolidated")
    ranks = range(info["world_size"])

    def join(prefix: str, layout: dict) -> dict[str, torch.Tensor]:
        parts = [load_tensors(folder / f"{prefix}-rank{r}.safetensors")[0] for r in ranks]
        missing = [r for r, part in zip(ranks, parts) if set(part) != set(layout)]
        if missing:
            raise ShardedCheckpointError(f"{folder}: {prefix} shards of ranks {missing} do not match {SHARDING_FILE}")
        return {k: torch.cat([p[k] for p in parts]) if spec["sharded"] else parts[0][k] for k, spec in layout.items()}

    weights, optim = join("trainable", info["weights"]), join("optimizer", info["optimizer"])
    extra, _ = load_tensors(folder / "extra.safetensors")
    for key, tensor in weights.items():
        if list(tensor.shape) != info["weights"][key]["shape"]:
            raise ShardedCheckpointError(f"{folder}: joined {key} has shape {list(tensor.shape)}, "
                                         f"expected {info['weights'][key]['shape']}")
    save_tensors(folder / "trainable.safetensors", {**weights, **extra})
    save_tensors(folder / "optimizer.safetensors", optim)
    atomic_write_json(folder / SHARDING_FILE, {**info, "format": "consolidated", "consolidated_from": info["world_size"]})
    for r in ranks:
        for prefix in ("trainable", "optimizer"):
            (folder / f"{prefix}-rank{r}.safetensors").unlink()
    (folder / "extra.safetensors").unlink()
    return folder
