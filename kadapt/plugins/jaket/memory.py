"""JAKET entity context embedding memory (§Entity Context Embedding Memory, eq. 7, 11, 12).

LM1 (the lower half of the frozen backbone) encodes every entity description once; an entity's
embedding is the mean of the LM1 states at the first and last token of its mention, which opens
the description (eq. 7). Relations are embedded the same way from their texts (and "inverse of ..."
texts for edges read backwards). During pre-training the memory is re-encoded every T(i) steps,
``T(i) = min(I_init * a**floor(i / r), I_max)`` (eq. 11), and mixed in with momentum,
``E <- m E + (1 - m) E_new`` (eq. 12). Encoding is batched by length; no Python loop per entity
runs in the hot path (training reads rows of the memory).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kadapt.core.errors import KadaptError


def refresh_interval(i: int, initial: int = 10, growth: int = 2, repeat: int = 3, maximum: int = 500) -> int:
    """T(i) of eq. 11: steps until the next refresh after the i-th one (i starts at 0)."""
    return min(initial * growth ** (i // repeat), maximum)


@torch.no_grad()
def encode_descriptions(backbone, texts: list[tuple[str, str]], layer: int, *, max_length: int = 64,
                        batch_size: int = 256) -> torch.Tensor:
    """(len(texts), H) float32: eq. 7 over ``(mention, description)`` pairs; the text opens with the mention."""
    if not texts:
        raise KadaptError("no descriptions to encode (empty knowledge graph?)")
    tok = backbone.tokenizer
    if tok is None:
        raise KadaptError("encoding descriptions needs a backbone with a tokenizer")
    mention_len = torch.tensor([max(len(ids), 1) for ids in
                                tok([m for m, _ in texts], add_special_tokens=False)["input_ids"]])
    lengths = torch.tensor([len(t) for _, t in texts])  # characters: a cheap proxy to bucket by length
    order = torch.argsort(lengths, descending=True)
    out = torch.empty(len(texts), backbone.spec.hidden_size, dtype=torch.float32)
    device = backbone.device
    for lo in range(0, len(texts), batch_size):
        rows = order[lo:lo + batch_size]
        enc = tok([texts[r][1] for r in rows.tolist()], truncation=True, max_length=max_length, padding=True,
                  return_special_tokens_mask=True, return_tensors="pt")
        content = (enc["special_tokens_mask"] == 0) & (enc["attention_mask"] == 1)
        positions = torch.arange(content.shape[1])
        start = torch.where(content, positions, content.shape[1]).min(1).values.clamp(max=content.shape[1] - 1)
        last = torch.where(content, positions, -1).max(1).values.clamp(min=0)
        end = torch.minimum(start + mention_len[rows] - 1, last).clamp(min=start)
        states = backbone.encode(enc["input_ids"].to(device), enc["attention_mask"].to(device), [layer])[layer]
        states = states.float().cpu()
        arange = torch.arange(len(rows))
        out[rows] = (states[arange, start] + states[arange, end]) / 2
    return out


class EntityMemory(nn.Module):
    """Entity and relation context embeddings plus the refresh schedule state (all saved buffers)."""

    def __init__(self, entities: torch.Tensor, relations: torch.Tensor, *, momentum: float = 0.8,
                 schedule: tuple[int, int, int, int] = (10, 2, 3, 500)):
        super().__init__()
        if entities.ndim != 2 or relations.ndim != 2 or entities.shape[1] != relations.shape[1]:
            raise KadaptError(f"memory shapes {tuple(entities.shape)} / {tuple(relations.shape)} do not fit")
        if not 0.0 <= momentum < 1.0:
            raise KadaptError(f"memory momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.schedule = schedule
        self.register_buffer("entities", entities.float().clone())
        self.register_buffer("relations", relations.float().clone())
        self.register_buffer("refreshes", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("next_refresh", torch.tensor(refresh_interval(0, *schedule), dtype=torch.long))

    @property
    def num_entities(self) -> int:
        return int(self.entities.shape[0])

    def momentum_update(self, entities: torch.Tensor, relations: torch.Tensor) -> None:
        """Eq. 12: E <- m E + (1 - m) E_new (entities and relations)."""
        m = self.momentum
        self.entities.copy_(self.entities * m + entities.to(self.entities) * (1 - m))
        self.relations.copy_(self.relations * m + relations.to(self.relations) * (1 - m))

    def tick(self, encode: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """Count one training step; re-encode and momentum-update when T(i) steps have passed."""
        self.steps += 1
        if int(self.steps) < int(self.next_refresh):
            return False
        self.momentum_update(*encode())
        self.refreshes += 1
        self.next_refresh += refresh_interval(int(self.refreshes), *self.schedule)
        return True

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """What ``memory.safetensors`` holds."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], *, momentum: float = 0.8,
                     schedule: tuple[int, int, int, int] = (10, 2, 3, 500), source: str = "memory") -> EntityMemory:
        missing = sorted({"entities", "relations"} - set(tensors))
        if missing:
            raise KadaptError(f"{source}: memory lacks tensor(s) {missing}")
        memory = cls(tensors["entities"], tensors["relations"], momentum=momentum, schedule=schedule)
        for key in ("refreshes", "steps", "next_refresh"):
            if key in tensors:
                getattr(memory, key).copy_(tensors[key])
        return memory
