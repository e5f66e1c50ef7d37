"""A masked-language-model head over ``[backbone ; plug-in]`` features, tied to the frozen input embeddings.

``logits = LayerNorm(GELU(x W + b)) E^T + bias``: ``W`` maps the feature width to the backbone's hidden
size, ``E`` is the backbone's (frozen) input embedding matrix, passed in at each call so the head owns
no copy of it. :func:`choose_masked_positions` picks the tokens to predict (dynamic masking: new
positions every step, from the global torch RNG the training loop seeds and checkpoints).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


class TiedMLMHead(nn.Module):
    def __init__(self, feature_size: int, hidden_size: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Linear(feature_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, features: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(F.gelu(self.transform(features)))
        return hidden @ embeddings.to(hidden.dtype).T + self.bias


def choose_masked_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, rate: float,
                            special_ids: list[int], keep: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask of the positions to mask: each real, non-special token with probability ``rate``;
    positions where ``keep`` is True are never chosen."""
    eligible = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    if keep is not None:
        eligible &= ~keep
    return eligible & (torch.rand(input_ids.shape, device=input_ids.device) < rate)
