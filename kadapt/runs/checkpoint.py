"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder ``step-000123/`` holds the trainable weights and buffers, the optimizer state
(tensors + JSON), the LR scheduler state (JSON), this process's RNG states and ``trainer_state.json``
(epoch, batches consumed in the epoch, global step). ``trainer_state.json`` is written last: a folder
without it is an interrupted save and is ignored on resume.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from kadapt.core.errors import KadaptError
from kadapt.core.model import TrainableModel
from kadapt.core.fileio import atomic_write_json, load_tensors, read_json, save_tensors

STATE_FILE = "trainer_state.json"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_to_files() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def rng_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    folder: Path,
    *,
    trainable: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    scheduler,
    trainer_state: dict,
    rank: int = 0,
    is_main: bool = True,
) -> None:
    """Every process writes its RNG state; the main process writes the rest, then the marker."""
    folder.mkdir(parents=True, exist_ok=True)
    if is_main:  # saving again into a folder (same step): it is incomplete until the new marker
        (folder / STATE_FILE).unlink(missing_ok=True)
    rng_tensors, rng_meta = rng_to_files()
    save_tensors(folder / f"rng-rank{rank}.safetensors", rng_tensors)
    atomic_write_json(folder / f"rng-rank{rank}.json", rng_meta)
    if not is_main:
        return
    save_tensors(folder / "trainable.safetensors", trainable or {})
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    save_tensors(folder / "optimizer.safetensors", opt_tensors)
    atomic_write_json(folder / "optimizer.json", opt_meta)
    atomic_write_json(folder / "scheduler.json", _jsonable(scheduler.state_dict()))
    atomic_write_json(folder / STATE_FILE, trainer_state)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: None))


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """Newest complete checkpoint (has ``trainer_state.json``), or None."""
    if not checkpoints.is_dir():
        return None
    done = [p for p in checkpoints.glob("step-*") if (p / STATE_FILE).exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


#: separates the owner from the name of a tensor kept outside ``state_dict`` (e.g. ``plugins.0::slots``)
EXTRA_STATE_SEP = "::"


def resumable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold of ``module``: trainable parameters and persistent buffers
    (e.g. a negative queue that training updates); frozen parameters are left out. A
    :class:`~kadapt.core.model.TrainableModel` adds its state outside ``state_dict`` (a sparse memory
    bank saved apart from the plug-in weights) through ``extra_tensors()``; its keys hold ``::``."""
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    state = {k: v for k, v in module.state_dict().items() if k not in frozen}
    if isinstance(module, TrainableModel):
        state.update(module.extra_tensors())
    return state


def load_checkpoint(folder: Path, *, module: torch.nn.Module, optimizer, scheduler, rank: int = 0) -> dict:
    """Restore weights, optimizer, scheduler and RNG; returns the trainer state."""
    state = read_json(folder / STATE_FILE, "trainer state")
    weights, _ = load_tensors(folder / "trainable.safetensors")
    own = set(resumable_state(module))
    if set(weights) != own:
        raise KadaptError(f"{folder}: checkpoint weights do not match the model being resumed "
                          f"(missing {sorted(own - set(weights))[:3]}, unexpected {sorted(set(weights) - own)[:3]})")
    plain = {k: v for k, v in weights.items() if EXTRA_STATE_SEP not in k}
    extra = {k: v for k, v in weights.items() if EXTRA_STATE_SEP in k}
    module.load_state_dict(plain, strict=False)
    if extra:
        module.load_extra_tensors(extra)
    opt_tensors, _ = load_tensors(folder / "optimizer.safetensors")
    optimizer_from_files(optimizer, opt_tensors, read_json(folder / "optimizer.json"))
    restore_schedule_and_rng(folder, scheduler, rank)
    return state


def restore_schedule_and_rng(folder: Path, scheduler, rank: int) -> None:
    """The scheduler state and this rank's RNG streams of a checkpoint (plain and sharded alike)."""
    scheduler.load_state_dict(read_json(folder / "scheduler.json"))
    rng_file = folder / f"rng-rank{rank}.safetensors"
    if rng_file.exists():
        rng_tensors, _ = load_tensors(rng_file)
        rng_from_files(rng_tensors, read_json(folder / f"rng-rank{rank}.json"))


def prune_checkpoints(checkpoints: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints. Interrupted saves do not count:
    a newer half-written folder must never push out the checkpoint a resume would need."""
    done = sorted((p for p in checkpoints.glob("step-*") if (p / STATE_FILE).exists()),
                  key=lambda p: int(p.name.split("-")[1]))
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
