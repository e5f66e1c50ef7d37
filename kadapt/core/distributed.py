"""The few collectives kadapt needs, on ``torch.distributed`` when a process group is up (under
``accelerate launch`` / ``torchrun``), and trivial single-process answers otherwise.

Used by distributed evaluation (sum the metric counts of every rank), the distributed hidden-state
cache build (ranks agree on an entry, share its encoding) and sharded checkpoints. Objects travel as
JSON text (never pickle): ``all_gather_json`` turns each rank's value into UTF-8 bytes, pads and gathers
them as a uint8 tensor.
"""
from __future__ import annotations

import json
import os

import torch


def active() -> bool:
    """True under a process group of more than one process."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else 1


def local_rank() -> int:
    """Rank within this node (``LOCAL_RANK``, set by torchrun / accelerate launch)."""
    return int(os.environ.get("LOCAL_RANK", rank())) if active() else 0


def local_world_size() -> int:
    """Processes on this node (``LOCAL_WORLD_SIZE``, set by torchrun / accelerate launch)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) if active() else 1


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def _device() -> torch.device:
    backend = torch.distributed.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def all_gather_json(value) -> list:
    """Every rank's ``value`` (JSON-able), in rank order."""
    if not active():
        return [value]
    device = _device()
    data = torch.tensor(list(json.dumps(value, sort_keys=True).encode("utf-8")), dtype=torch.uint8, device=device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world_size())]
    torch.distributed.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64, device=device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[:data.numel()] = data
    chunks = [torch.zeros(longest, dtype=torch.uint8, device=device) for _ in range(world_size())]
    torch.distributed.all_gather(chunks, padded)
    return [json.loads(bytes(c[:int(s.item())].tolist()).decode("utf-8")) for c, s in zip(chunks, sizes)]


def sum_counts(counts: dict[str, float]) -> dict[str, float]:
    """Per-key sums over ranks, in float64 (metric counts are integers or sums of per-example values;
    ranks may hold different keys). Single process: ``counts`` unchanged."""
    if not active():
        return counts
    keys = sorted({k for per_rank in all_gather_json(sorted(counts)) for k in per_rank})
    values = torch.tensor([float(counts.get(k, 0.0)) for k in keys], dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(values)
    return dict(zip(keys, values.cpu().tolist()))
