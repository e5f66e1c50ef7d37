"""``KnowledgeModel``: a frozen backbone, any set of plug-ins, and one head.

One backbone pass per batch materialises the union of the hidden states every outside plug-in reads
(plus the last one) and feeds them all; features are ``[backbone_last ; plugin_1 ; ... ; plugin_n]``
in the order the plug-ins were given. An INSIDE plug-in (TRELM) changes the backbone pass itself, so
it runs a pass of its own (``plugin.inside_features``) and contributes that pass's last hidden state;
outside plug-ins and ``backbone_last`` still read the unmodified pass they were trained on.
A RE-ENTRANT plug-in (JAKET) reads a lower state of the same pass, changes it and runs the upper
layers again (``plugin.reentrant_features``); it contributes that second pass's last state.
The backbone is kept out of the module tree (not in ``state_dict``, ``parameters()`` or DDP), so
only plug-ins and head are ever saved, optimised or wrapped. Inputs of shape (batch, n, seq) (multiple
choice: one row per choice; QA: one row per document window) are encoded as batch·n rows and the head
gets features of shape (batch, n, seq, feature_size).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kadapt.core.backbone import FrozenBackbone
from kadapt.store.hidden_cache import states_from_batch
from kadapt.core.errors import KadaptError
from kadapt.core.objective import Objective, ObjectiveOutput
from kadapt.core.plugin import Plugin


def _outside(plugin, backbone, input_ids, attention_mask, batch, states):
    return plugin(states, attention_mask)


def _inside(plugin, backbone, input_ids, attention_mask, batch, states):
    return plugin.inside_features(backbone, input_ids, attention_mask, batch,
                                  plain_last=states[backbone.spec.num_layers])


def _reentrant(plugin, backbone, input_ids, attention_mask, batch, states):
    return plugin.reentrant_features(backbone, input_ids, attention_mask, batch, states)


#: placement -> (the method a plug-in needs, how its feature block is computed from the shared pass)
FEATURES_BY_PLACEMENT = {
    "outside": (None, _outside),
    "inside": ("inside_features", _inside),
    "reentrant": ("reentrant_features", _reentrant),
}


class KnowledgeModel(nn.Module):
    def __init__(self, backbone: FrozenBackbone, plugins: Sequence[Plugin] = (), head: Objective | None = None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # not a submodule
        self.plugins = nn.ModuleList(plugins)
        for plugin in plugins:
            needs = FEATURES_BY_PLACEMENT.get(plugin.placement, ("<unknown placement>",))[0]
            if needs is not None and not hasattr(plugin, needs):
                raise KadaptError(
                    f"plug-in {plugin.config.name!r} of kind {plugin.kind!r} attaches {plugin.placement!r}; "
                    f"this KnowledgeModel composes {sorted(FEATURES_BY_PLACEMENT)} plug-ins that define the matching hook"
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

    def plugin_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       states: dict[int, torch.Tensor] | None = None,
                       batch: dict | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(backbone_last, [plugin_1 output, ...])`` from ONE backbone pass.

        ``states`` (e.g. read from the hidden-state cache) replaces the backbone pass when given;
        ``batch`` (optional) reaches inside plug-ins (entity spans for TRELM's memory bank)."""
        if states is None:
            states = self.backbone.encode(input_ids, attention_mask, self.required_layers())
        else:
            states = {k: v.to(self.backbone.dtype) for k, v in states.items()}
        last = states[self.backbone.spec.num_layers]
        outputs = [FEATURES_BY_PLACEMENT[plugin.placement][1](plugin, self.backbone, input_ids, attention_mask, batch, states)
                   for plugin in self.plugins]
        return last, outputs

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 states: dict[int, torch.Tensor] | None = None, batch: dict | None = None) -> torch.Tensor:
        """``[backbone_last ; plugin outputs]``: (B, S, feature_size); arguments as :meth:`plugin_outputs`."""
        last, outputs = self.plugin_outputs(input_ids, attention_mask, states, batch)
        parts = [last, *outputs]
        dtype = parts[-1].dtype
        return torch.cat([p.to(dtype) for p in parts], dim=-1)

    def forward(self, batch: dict) -> ObjectiveOutput:
        if self.head is None:
            raise KadaptError("KnowledgeModel has no head; call .features() for raw features")
        if getattr(self.head, "encodes_several_sequences", False):
            # heads that read several sequences per record (XLM-K: sentence + description) run the model themselves
            return self.head.forward_with_model(self, batch)
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        if input_ids.dim() == 3:  # (batch, choices|windows, seq): encode flat, hand the head 4-D features
            feats = self.features(input_ids.flatten(0, 1), mask.flatten(0, 1))
            return self.head(feats.unflatten(0, input_ids.shape[:2]), batch)
        feats = self.features(input_ids, mask, states_from_batch(batch), batch)
        return self.head(feats, batch)

    def before_step(self, batch: dict, step: int, epoch: int, optimizer=None) -> None:
        """Training-loop hook, called before each optimizer step's first forward; forwarded to the
        plug-ins that define ``before_step`` (TRELM: knowledge-path re-selection, λ schedule)."""
        for plugin in self.plugins:
            if hasattr(plugin, "before_step") and any(p.requires_grad for p in plugin.parameters()):
                plugin.before_step(self, batch, step, epoch, optimizer)
