"""Contrastive pieces of XLM-K: the FIFO candidate queue, InfoNCE (eq. 5) and the rank gather.

* :class:`CandidateQueue` — a fixed-size FIFO of projected candidate keys and their entity ids, held in
  registered buffers (so checkpoints and ``memory.safetensors`` carry it; the anchor code's queue is
  lost on restart). Slots are written in order at a pointer that wraps around; only filled slots are
  candidates. ``init="random"`` (paper and anchor code) starts full of N(0, 1/dim) keys with id -1,
  drawn from a fixed seed so every DDP rank holds the same queue; ``init="empty"`` starts with no
  filled slot (in-batch candidates only at the first step).
* :func:`info_nce` — ``-log exp(q·k+/τ) / Σ_k exp(q·k/τ)`` over in-batch keys plus queued keys, mean over
  queries (eq. 5). Switches: ``mask_same_entity`` removes candidates that show the positive's entity
  (other than the positive) from the denominator (neither eq. 5 nor the anchor code does; default off);
  ``bidirectional`` is the anchor code's form: queries → keys with the other in-batch queries as extra
  candidates, plus keys → queries with the other in-batch keys as extra candidates, averaged.
* :func:`gather_across_ranks` — concatenates a tensor over DDP ranks in rank order without a gradient
  through the copies of other ranks; the local slice keeps its graph. Sizes may differ per rank.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


QUEUE_INITS = ("random", "empty")


class CandidateQueue(nn.Module):
    """FIFO of ``size`` keys of width ``dim`` (+ int64 ids), all in buffers."""

    def __init__(self, size: int, dim: int, init: str = "random", seed: int = 0):
        super().__init__()
        if size < 0:
            raise ValueError(f"queue size must be >= 0, got {size}")
        if init not in QUEUE_INITS:
            raise ValueError(f"queue_init must be one of {list(QUEUE_INITS)}, got {init!r}")
        self.size = size
        if init == "random":
            keys = torch.randn(size, dim, generator=torch.Generator().manual_seed(seed)) / dim ** 0.5
        else:
            keys = torch.zeros(size, dim)
        self.register_buffer("keys", keys)
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(size if init == "random" else 0, dtype=torch.long))

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
             temperature: float = 1.0, normalize: bool = False, mask_same_entity: bool = False,
             bidirectional: bool = False) -> torch.Tensor:
    """Mean InfoNCE of ``queries[i]`` against positive ``keys[i]``; candidates are all ``keys`` + ``extra_keys``.

    With ``mask_same_entity`` a candidate whose id equals the positive's id (other than the positive
    itself) is removed from the denominator. With ``bidirectional`` the loss is the mean of the
    query→key direction (candidates: keys, the other queries, extra keys) and the key→query direction
    (candidates: queries, the other keys, extra keys).
    """
    extra = None if extra_keys is None else extra_keys.to(keys.dtype)
    if normalize:
        queries, keys = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
        extra = None if extra is None else F.normalize(extra, dim=-1)
    ids = key_ids if mask_same_entity else None
    if not bidirectional:
        return _one_direction(queries, keys, None, extra, ids, extra_ids, temperature)
    forward = _one_direction(queries, keys, queries, extra, ids, extra_ids, temperature)
    backward = _one_direction(keys, queries, keys, extra, ids, extra_ids, temperature)
    return (forward + backward) / 2


def _one_direction(anchors: torch.Tensor, positives: torch.Tensor, others: torch.Tensor | None,
                   extra: torch.Tensor | None, ids: torch.Tensor | None, extra_ids: torch.Tensor | None,
                   temperature: float) -> torch.Tensor:
    """Cross-entropy of ``anchors[i]`` picking ``positives[i]`` among positives (+ others but self) + extra."""
    n = anchors.shape[0]
    parts = [positives] + ([others] if others is not None else []) + ([extra] if extra is not None else [])
    logits = anchors @ torch.cat(parts).T / temperature
    rows = torch.arange(n, device=logits.device)
    blocked = torch.zeros_like(logits, dtype=torch.bool)
    if others is not None:
        blocked[rows, n + rows] = True  # an anchor is not its own candidate
    if ids is not None:
        id_parts = [ids] + ([ids] if others is not None else []) + ([extra_ids] if extra is not None else [])
        same = ids[:, None] == torch.cat(id_parts)[None, :]
        same[rows, rows] = False  # the positive stays
        blocked |= same
    logits = logits.masked_fill(blocked, float("-inf"))
    return F.cross_entropy(logits.float(), rows)


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
