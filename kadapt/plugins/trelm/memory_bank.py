"""Knowledge-augmented memory bank (TRELM §3.2, eq. 4–8).

* local memory of an entity mention (eq. 4): mean of the encoder outputs over the window
  ``[l-k, r+k]`` around the mention ``[l, r]``, clipped to the real (non-padding) tokens. The paper's
  denominator ``2k+r-l`` assumes an unclipped window; the mean over the positions actually present
  keeps a window that is cut by the sequence ends (or a ``k`` larger than the sequence) well defined.
* moving average per entity (eq. 5): ``M ← (1-γ)·M + γ·M_local(e,x)``; an entity's first
  occurrence initialises ``M`` with its pre-trained input embedding (mean over its tokens) first.
* global memory (eq. 6): the mean of the last-layer ``[CLS]`` states of every context the entity
  occurred in (a running sum and count).
* input mixing (eq. 7): ``I_p = (1-λ)·E_p + λ/2·(M_local + M_global)`` at the tokens of an important
  entity, with ``λ_q = λ/β^q`` at epoch ``q`` (eq. 8). ``E_p`` is the token's own embedding output, or
  the KG injection embedding h_e with ``inject_kg`` (``knowledge.py``). A global memory with no context
  yet falls back to the local memory.

Entities are keyed by an integer (crc32 of the normalised surface) hashed into ``slots`` rows:
two entities that share a row share a memory (the table size bounds memory use).
"""
from __future__ import annotations

import torch
from torch import nn

from kadapt.core.errors import KadaptError


def memory_lambda(initial: float, beta: float, epoch: int) -> float:
    """λ_q = λ / β^q (eq. 8)."""
    return initial / beta ** epoch


def window_mean(hidden: torch.Tensor, attention_mask: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                k: int) -> torch.Tensor:
    """Eq. 4: mean of ``hidden`` (B, S, H) over positions ``start-k .. end-1+k`` (``end`` exclusive)
    that are real tokens; rows whose window holds no real token give zeros."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
    inside = (positions >= (start - k)[:, None]) & (positions < (end + k)[:, None]) & attention_mask.bool()
    weights = inside.to(hidden.dtype)
    return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)


class KnowledgeMemoryBank(nn.Module):
    """Local (moving-average) and global (mean [CLS]) memory per entity slot; not trained by SGD."""

    def __init__(self, slots: int, hidden_size: int, gamma: float):
        super().__init__()
        if slots < 1:
            raise KadaptError(f"memory_slots must be >= 1, got {slots}")
        if not 0.0 < gamma < 1.0:
            raise KadaptError(f"memory_gamma must lie in (0, 1), got {gamma}")
        self.slots, self.gamma = slots, gamma
        self.register_buffer("local", torch.zeros(slots, hidden_size), persistent=False)
        self.register_buffer("global_sum", torch.zeros(slots, hidden_size), persistent=False)
        self.register_buffer("global_count", torch.zeros(slots), persistent=False)
        self.register_buffer("seen", torch.zeros(slots, dtype=torch.bool), persistent=False)

    def slot_of(self, keys: torch.Tensor) -> torch.Tensor:
        return keys.long().remainder(self.slots)

    def lookup(self, keys: torch.Tensor, initial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(local, global) memory per row; ``initial`` (B, H) stands in for slots never seen."""
        slot = self.slot_of(keys)
        seen = self.seen[slot][:, None]
        local = torch.where(seen, self.local[slot], initial)
        count = self.global_count[slot][:, None]
        glob = torch.where(count > 0, self.global_sum[slot] / count.clamp_min(1.0), local)
        return local, glob

    @torch.no_grad()
    def update(self, keys: torch.Tensor, context: torch.Tensor, cls: torch.Tensor, initial: torch.Tensor) -> None:
        """Eq. 5 and 6 for each row in order (repeated entities in one batch update twice)."""
        for slot, ctx, c, init in zip(self.slot_of(keys).tolist(), context, cls, initial):
            if not self.seen[slot]:
                self.local[slot] = init
                self.seen[slot] = True
            self.local[slot] = (1 - self.gamma) * self.local[slot] + self.gamma * ctx
            self.global_sum[slot] += c
            self.global_count[slot] += 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``memory.safetensors`` stores: the rows of the slots seen so far (sparse)."""
        rows = torch.nonzero(self.seen).flatten()
        return {"slots": rows, "local": self.local[rows], "global_sum": self.global_sum[rows],
                "global_count": self.global_count[rows]}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        rows = tensors["slots"].long()
        self.local.zero_()
        self.global_sum.zero_()
        self.global_count.zero_()
        self.seen.zero_()
        self.local[rows] = tensors["local"]
        self.global_sum[rows] = tensors["global_sum"]
        self.global_count[rows] = tensors["global_count"]
        self.seen[rows] = True
