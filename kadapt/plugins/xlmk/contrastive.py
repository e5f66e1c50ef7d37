"""Contrastive pieces of XLM-K: the FIFO candidate queue, InfoNCE (eq. 5) and the rank gather.

* :class:`CandidateQueue` — a fixed-size FIFO of projected candidate keys and their entity ids, held in
  registered buffers (so checkpoints and ``memory.safetensors`` carry it; the anchor code's queue is
  lost on restart). Slots are written in order at a pointer that wraps around; only filled slots are
  candidates, so an empty queue at the first step means in-batch candidates only.
* :func:`info_nce` — ``-log exp(q·k+/τ) / Σ_k exp(q·k/τ)`` over in-batch keys plus queued keys, mean over
  queries; candidates that show the query's own entity (other than its positive) can be masked out.
* :func:`gather_across_ranks` — concatenates a tensor over DDP ranks in rank order without a gradient
  through the copies of other ranks; the local slice keeps its graph. Sizes may differ per rank.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CandidateQueue(nn.Module):
    """FIFO of ``size`` keys of width ``dim`` (+ int64 ids), all in buffers."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 0:
            raise ValueError(f"queue size must be >= 0, got {size}")
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Write ``keys`` (oldest first) at the pointer; when more than ``size`` arrive, the last ``size`` stay."""
        n = keys.shape[0]
        if self.size == 0 or n == 0:
            return
        ptr = int(self.ptr)
        if n > self.size:
            keys, ids, ptr, n_kept = keys[-self.size:], ids[-self.size:], (ptr + n - self.size) % self.size, self.size
        else:
            n_kept = n
        slots = (ptr + torch.arange(n_kept, device=self.keys.device)) % self.size
        self.keys[slots] = keys.detach().to(self.keys.dtype)
        self.ids[slots] = ids.to(self.ids.device)
        self.ptr.fill_((int(self.ptr) + n) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n))

    def candidates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and ids of the filled slots (slot order; slots fill from 0 upwards)."""
        count = int(self.filled)
        return self.keys[:count], self.ids[:count]


def info_nce(queries: torch.Tensor, keys: torch.Tensor, key_ids: torch.Tensor | None = None,
             extra_keys: torch.Tensor | None = None, extra_ids: torch.Tensor | None = None, *,
             temperature: float = 1.0, normalize: bool = False, mask_same_entity: bool = True) -> torch.Tensor:
    """Mean InfoNCE of ``queries[i]`` against positive ``keys[i]``; candidates are all ``keys`` + ``extra_keys``.

    With ``mask_same_entity`` a candidate whose id equals the positive's id (other than the positive
    itself) is removed from the denominator: it is the same entity, not a negative.
    """
    candidates = keys if extra_keys is None else torch.cat([keys, extra_keys.to(keys.dtype)])
    if normalize:
        queries, candidates = F.normalize(queries, dim=-1), F.normalize(candidates, dim=-1)
    logits = queries @ candidates.T / temperature
    n = queries.shape[0]
    if mask_same_entity and key_ids is not None:
        cand_ids = key_ids if extra_ids is None else torch.cat([key_ids, extra_ids])
        same = key_ids[:, None] == cand_ids[None, :]
        same[torch.arange(n), torch.arange(n)] = False
        logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits.float(), torch.arange(n, device=logits.device))


def world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (first dim may differ per rank) over ranks; only the local part has grad."""
    if world_size() == 1:
        return tensor
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    if longest == 0:
        return tensor
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [part[:n] for part, n in zip(parts, sizes)]
    parts[rank] = tensor
    return torch.cat(parts)
