"""K-Adapter knowledge-specific adapter (Wang et al., 2021, §3.1–3.2): an outside plug-in.

Adapter layer ``i`` reads backbone hidden state ``layers[i]`` plus the output of adapter layer
``i-1`` (added, as the anchor code does, so widths stay H), projects H→``adapter_size``, runs
``num_transformer_layers`` post-LN transformer layers, projects back to H, and adds its input (skip
connection across the projections). Down/up projections start near zero (N(0, ``init_std``), zero
bias), so every adapter layer starts as an identity map. Padding is masked in the adapter's
attention (the anchor code attends to padding).

Size for RoBERTa-large (H=1024) with the paper's settings (N=2, H_A=768, A_A=12, FFN 3072):
one adapter layer = 787,200 (down) + 14,175,744 (2 layers × 7,087,872) + 787,456 (up)
= 15,750,400 parameters; three = 47,251,200. The paper's "about 42M" is the adapters' transformer
layers alone (3 × 2 × 7,087,872 = 42,527,232); the projections make up the rest.

Layers: ``layers: paper`` (default) reads (0, 11, 23) of a 24-layer backbone as §3.2 says; the anchor
code's scripts pass (0, 11, 22) — ``layers: reference``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import PluginFormatError
from kadapt.core.plugin import Pass, Plugin, PluginConfig


@dataclass
class KAdapterConfig(PluginConfig):
    """K-Adapter hyper-parameters; defaults are the paper's (§3.2)."""

    name: str = field(default="kadapter", metadata={"help": "Plug-in name, e.g. 'factual' or 'linguistic'."})
    layers: tuple[int, ...] | str | None = field(
        default="paper",
        metadata={"help": "Backbone hidden-state indices the adapter layers read (0 = embeddings), or a preset: "
                          "'paper' = (0, L/2-1, L-1) = (0, 11, 23) for L=24 (§3.2, the default); 'reference' = "
                          "(0, L/2-1, L-2) = (0, 11, 22), what the anchor code's scripts pass. null = 'paper'."},
    )
    adapter_size: int = field(default=768, metadata={"help": "Width H_A of the adapter transformer (down-projection size H_d)."})
    num_transformer_layers: int = field(default=2, metadata={"help": "N: transformer layers inside each adapter layer."})
    num_attention_heads: int = field(default=12, metadata={"help": "A_A: attention heads in the adapter transformer."})
    intermediate_size: int = field(default=3072, metadata={"help": "FFN width of the adapter transformer."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on attention probabilities and residual branches."})
    init_std: float = field(default=2e-4, metadata={"help": "Std of the normal init of down/up projections (bias zero)."})
    transformer_init_std: float = field(default=0.02, metadata={"help": "Std of the normal init of the adapter transformer weights."})
    layer_norm_eps: float = field(default=1e-5, metadata={"help": "LayerNorm epsilon in the adapter transformer."})

    def resolved_layers(self, num_layers: int) -> tuple[int, ...]:
        if self.layers is None or isinstance(self.layers, str):
            return layer_preset(self.layers or "paper", num_layers)
        return tuple(self.layers)


LAYER_PRESETS = ("paper", "reference")


def layer_preset(name: str, num_layers: int) -> tuple[int, ...]:
    """The adapter layers of a preset for an ``num_layers``-layer backbone (all layers below 4)."""
    if name not in LAYER_PRESETS:
        raise PluginFormatError(f"K-Adapter layers: unknown preset {name!r} (presets: {list(LAYER_PRESETS)} "
                                "or a list of layer indices)")
    if num_layers < 4:
        return tuple(range(num_layers))
    last = num_layers - 1 if name == "paper" else num_layers - 2
    return (0, num_layers // 2 - 1, last)


class AdapterTransformerLayer(nn.Module):
    """Post-LN transformer layer (BERT layout: 4·(d²+d) + 2·(d·f) + f + d + 2·2d parameters)."""

    def __init__(self, size: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        if size % heads:
            raise PluginFormatError(f"adapter_size {size} is not divisible by num_attention_heads {heads}")
        self.heads = heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.attn_out = nn.Linear(size, size)
        self.attn_norm = nn.LayerNorm(size, eps=eps)
        self.ffn_in = nn.Linear(size, ffn)
        self.ffn_out = nn.Linear(ffn, size)
        self.ffn_norm = nn.LayerNorm(size, eps=eps)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        return x.view(b, s, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """``key_mask``: bool (B, 1, 1, S), True where a key position may be attended to."""
        b, s, d = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        p = self.dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)
        ctx = ctx.transpose(1, 2).reshape(b, s, d)
        x = self.attn_norm(x + F.dropout(self.attn_out(ctx), p, self.training))
        h = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.ffn_norm(x + F.dropout(h, p, self.training))


class KAdapterLayer(nn.Module):
    """Down-projection → N transformer layers → up-projection, with a skip across the projections."""

    def __init__(self, hidden: int, config: KAdapterConfig):
        super().__init__()
        self.down = nn.Linear(hidden, config.adapter_size)
        self.layers = nn.ModuleList(
            AdapterTransformerLayer(
                config.adapter_size, config.num_attention_heads, config.intermediate_size,
                config.dropout, config.layer_norm_eps,
            )
            for _ in range(config.num_transformer_layers)
        )
        self.up = nn.Linear(config.adapter_size, hidden)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        for layer in self.layers:
            h = layer(h, key_mask)
        return x + self.up(h)


class KAdapter(Plugin):
    """Outside plug-in: adapter layers reading backbone states at ``config.layers``."""

    kind = "kadapter"
    placement = "outside"
    config_class = KAdapterConfig

    def __init__(self, config: KAdapterConfig, spec: BackboneSpec):
        super().__init__(config, spec)
        self.layer_ids = config.resolved_layers(spec.num_layers)
        bad = [i for i in self.layer_ids if not 0 <= i <= spec.num_layers]
        if not self.layer_ids or bad or list(self.layer_ids) != sorted(set(self.layer_ids)):
            raise PluginFormatError(
                f"K-Adapter layers {list(self.layer_ids)} must be strictly increasing indices in "
                f"0..{spec.num_layers} for a {spec.num_layers}-layer backbone"
            )
        self.adapter_layers = nn.ModuleList(KAdapterLayer(spec.hidden_size, config) for _ in self.layer_ids)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.adapter_layers:
            for proj in (layer.down, layer.up):
                nn.init.normal_(proj.weight, std=self.config.init_std)
                nn.init.zeros_(proj.bias)
            for module in layer.layers.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=self.config.transformer_init_std)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def required_layers(self) -> tuple[int, ...]:
        return self.layer_ids

    def card_notes(self) -> list[str]:
        return [
            f"adapter layers read backbone hidden states {list(self.layer_ids)} (0 = embeddings)",
            "size: with RoBERTa-large and the paper's settings one adapter layer has 15,750,400 parameters "
            "and three have 47,251,200; the paper's 'about 42M' is the transformer layers alone (42,527,232)",
        ]

    @property
    def output_size(self) -> int:
        return self.spec.hidden_size

    def forward(self, pass_: Pass) -> torch.Tensor:
        return self.adapt(pass_.states, pass_.attention_mask)

    def adapt(self, states: Mapping[int, torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        """The adapter's last output from the backbone states at ``layer_ids`` (padding masked)."""
        key_mask = attention_mask.bool()[:, None, None, :]
        out = None
        for index, layer in zip(self.layer_ids, self.adapter_layers):
            x = states[index].to(layer.down.weight.dtype)
            out = layer(x if out is None else x + out, key_mask)
        return out


def kadapter_layer_parameters(hidden: int, size: int, layers: int, ffn: int) -> int:
    """Closed-form parameter count of one adapter layer (used to cross-check the module)."""
    per_trm = 4 * (size * size + size) + 2 * size * ffn + ffn + size + 4 * size
    return (hidden * size + size) + layers * per_trm + (size * hidden + hidden)

