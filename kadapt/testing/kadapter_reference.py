"""A reference-style K-Adapter for tests and the import benchmark: the math and the state-dict key names
of microsoft/K-Adapter's ``AdapterModel`` (``fac-adapter.py`` / ``lin-adapter.py``), written here from
the reference's description (BERT encoder layers in post-LN form, erf GELU, LayerNorm eps 1e-5, an
all-ones attention mask — the reference attends to padding — adapter inputs ``hidden_states[i] +``
the previous adapter's output, a skip across the projections, ``adapter_skip_layers`` 0).

``ReferenceAdapterModel.state_dict()`` has the reference keys (``adapter.{i}.down_project.*``,
``adapter.{i}.encoder.layer.{j}.attention.self.query.*``, ..., ``com_dense.*``, ``dense.*``,
``out_proj.*``); :meth:`adapter_output` is the reference's ``hidden_states_last``.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class _SelfAttention(nn.Module):
    def __init__(self, size: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(size, size), nn.Linear(size, size), nn.Linear(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        split = lambda t: t.view(b, s, self.heads, d // self.heads).permute(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + torch.zeros(b, 1, 1, s)  # mask of ones
        context = torch.softmax(scores, dim=-1) @ v
        return context.permute(0, 2, 1, 3).reshape(b, s, d)


class _DenseNorm(nn.Module):
    def __init__(self, inner: int, size: int):
        super().__init__()
        self.dense = nn.Linear(inner, size)
        self.LayerNorm = nn.LayerNorm(size, eps=1e-5)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, size: int, heads: int):
        super().__init__()
        self.self = _SelfAttention(size, heads)
        self.output = _DenseNorm(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class _Intermediate(nn.Module):
    def __init__(self, size: int, ffn: int):
        super().__init__()
        self.dense = nn.Linear(size, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense(x)
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))  # the reference's gelu


class _Layer(nn.Module):
    def __init__(self, size: int, heads: int, ffn: int):
        super().__init__()
        self.attention = _Attention(size, heads)
        self.intermediate = _Intermediate(size, ffn)
        self.output = _DenseNorm(ffn, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = self.attention(x)
        return self.output(self.intermediate(attended), attended)


class _Encoder(nn.Module):
    def __init__(self, size: int, heads: int, ffn: int, layers: int):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(size, heads, ffn) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class ReferenceAdapter(nn.Module):
    def __init__(self, hidden: int, size: int, heads: int, ffn: int, layers: int):
        super().__init__()
        self.down_project = nn.Linear(hidden, size)
        self.encoder = _Encoder(size, heads, ffn, layers)
        self.up_project = nn.Linear(size, hidden)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.up_project(self.encoder(self.down_project(hidden_states)))


class ReferenceAdapterModel(nn.Module):
    """``adapter_list`` adapters + (optionally) the fac-adapter (``head='factual'``, ``labels`` relations)
    or lin-adapter (``head='linguistic'``, ``labels`` = max_seq_length) pre-training head."""

    def __init__(self, hidden: int, adapter_list, size: int = 768, heads: int = 12, ffn: int = 3072,
                 layers: int = 2, head: str | None = "factual", labels: int = 5):
        super().__init__()
        self.adapter_list = list(adapter_list)
        self.adapter = nn.ModuleList(ReferenceAdapter(hidden, size, heads, ffn, layers) for _ in self.adapter_list)
        if head is not None:
            self.com_dense = nn.Linear(2 * hidden, hidden)
            if head == "linguistic":
                self.self_attention = _Attention(hidden, 1)
            self.dense = nn.Linear(2 * hidden if head == "factual" else hidden, hidden)
            self.out_proj = nn.Linear(hidden, labels)

    def adapter_output(self, hidden_states) -> torch.Tensor:
        """The reference's ``hidden_states_last`` from the backbone's hidden-state tuple."""
        last = torch.zeros_like(hidden_states[0])
        for index, adapter in zip(self.adapter_list, self.adapter):
            last = adapter(hidden_states[index] + last)
        return last


def randomize(module: nn.Module, seed: int, std: float = 0.05) -> nn.Module:
    """Every parameter drawn from N(0, std) (LayerNorm weights around 1): no near-zero init that would hide
    a wrong mapping."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * std
            param.copy_(1.0 + noise if "LayerNorm.weight" in name else noise)
    return module.eval()


__all__ = ["ReferenceAdapterModel", "randomize"]
