"""``KnowledgeModel``: a frozen backbone, any set of plug-ins, and one head.

One backbone pass per batch materialises the union of the hidden states every outside plug-in reads
(plus the last one) and feeds them all; features are ``[backbone_last ; plugin_1 ; ... ; plugin_n]``.
The backbone is kept out of the module tree (not in ``state_dict``, ``parameters()`` or DDP), so
only plug-ins and head are ever saved, optimised or wrapped.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kadapt.backbone import FrozenBackbone
from kadapt.errors import KadaptError
from kadapt.objectives.base import Objective, ObjectiveOutput
from kadapt.plugins.base import Plugin


class KnowledgeModel(nn.Module):
    def __init__(self, backbone: FrozenBackbone, plugins: Sequence[Plugin] = (), head: Objective | None = None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # not a submodule
        self.plugins = nn.ModuleList(plugins)
        for plugin in plugins:
            if plugin.placement != "outside":
                raise KadaptError(
                    f"plug-in {plugin.config.name!r} of kind {plugin.kind!r} attaches {plugin.placement!r}; "
                    "this KnowledgeModel composes outside plug-ins only"
                )
            if plugin.spec != backbone.spec:
                raise KadaptError(
                    f"plug-in {plugin.config.name!r} was built for {plugin.spec}, backbone is {backbone.spec}"
                )
        self.head = head

    def train(self, mode: bool = True) -> KnowledgeModel:
        """Frozen plug-ins (no trainable parameter) stay in eval mode: no dropout noise in features."""
        super().train(mode)
        for plugin in self.plugins:
            if not any(p.requires_grad for p in plugin.parameters()):
                plugin.eval()
        return self

    @property
    def feature_size(self) -> int:
        return self.backbone.spec.hidden_size + sum(p.output_size for p in self.plugins)

    def required_layers(self) -> list[int]:
        layers = {self.backbone.spec.num_layers}
        for plugin in self.plugins:
            layers.update(plugin.required_layers())
        return sorted(layers)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[backbone_last ; plugin outputs]`` from ONE backbone pass: (B, S, feature_size)."""
        states = self.backbone.encode(input_ids, attention_mask, self.required_layers())
        last = states[self.backbone.spec.num_layers]
        parts = [last] + [plugin(states, attention_mask) for plugin in self.plugins]
        dtype = parts[-1].dtype
        return torch.cat([p.to(dtype) for p in parts], dim=-1)

    def forward(self, batch: dict) -> ObjectiveOutput:
        if self.head is None:
            raise KadaptError("KnowledgeModel has no head; call .features() for raw features")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if ids.dim() == 3:  # grouped inputs (B, G, S), e.g. few-shot pairs: the head gets (B, G, S, F)
            b, g, s = ids.shape
            return self.head(self.features(ids.reshape(b * g, s), mask.reshape(b * g, s)).reshape(b, g, s, -1), batch)
        feats = self.features(ids, mask)
        return self.head(feats, batch)
