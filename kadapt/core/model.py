"""``KnowledgeModel``: a frozen backbone, any set of plug-ins, and one head.

One backbone pass per batch materialises the union of the hidden states the plug-ins read (plus the
last one); every plug-in gets the same :class:`~kadapt.core.plugin.Pass` and returns its feature
block, and features are ``[backbone_last ; plugin_1 ; ... ; plugin_n]`` in the order the plug-ins
were given. A plug-in that changes the pass (TRELM) runs its own inside ``forward(pass_)``; one that
re-enters upper layers (JAKET) calls ``pass_.backbone.run_layers``; the shared states and
``backbone_last`` are always those of the unmodified pass. States read from the hidden-state cache
(batch keys ``hidden_state.<k>``) replace the live pass.

The backbone is kept out of the module tree (not in ``state_dict``, ``parameters()`` or DDP), so only
plug-ins and head are ever saved, optimised or wrapped; :meth:`KnowledgeModel.to` moves it along.
Grouped inputs of shape (batch, n, seq) (multiple choice: a row per choice; QA: a row per document
window) are encoded as batch·n rows and the head gets features of shape (batch, n, seq, size).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.core.objective import Objective, ObjectiveOutput
from kadapt.core.plugin import Pass, Plugin, StepInfo

#: batch keys of cached hidden states: ``hidden_state.<index>``
STATE_PREFIX = "hidden_state."


def states_from_batch(batch: dict) -> dict[int, torch.Tensor] | None:
    """The cached states a batch carries (None for a plain batch)."""
    states = {int(k[len(STATE_PREFIX):]): v for k, v in batch.items() if k.startswith(STATE_PREFIX)}
    return states or None


def grouped_batch(batch: dict) -> dict:
    """The keys of a grouped batch (B, n, ...) that are per row -- tensors whose first two dimensions
    are those of ``input_ids`` (``token_entities``, ``attention_mask``, ...) -- flattened to (B·n, ...)
    like the inputs; per-example keys (``labels``) are left out."""
    lead = batch["input_ids"].shape[:2]
    return {k: v.flatten(0, 1) for k, v in batch.items()
            if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[:2] == lead}


class TrainableModel(nn.Module):
    """What the training loop trains: ``forward(batch) -> ObjectiveOutput`` with a ``head`` (metrics)
    and a ``backbone`` kept outside the module tree. Hooks with no-op defaults: :meth:`on_step` before
    each optimizer step, :meth:`extra_tensors` / :meth:`load_extra_tensors` for state outside
    ``state_dict`` that checkpoints must hold. (No class-level ``head``: ``nn.Module`` keeps a module
    attribute in ``_modules``, which a class attribute would shadow.)"""

    def on_step(self, info: StepInfo) -> None:
        """Called before each optimizer step's first forward."""

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def entity_linking(self):
        """The entity linking the model's encoders should produce ``token_entities`` with (None: none)."""
        return None

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise KadaptError(f"{type(self).__name__} keeps no extra tensors, got {sorted(tensors)[:3]}")


class KnowledgeModel(TrainableModel):
    def __init__(self, backbone, plugins: Sequence[Plugin] = (), head: Objective | None = None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # not a submodule
        self.plugins = nn.ModuleList(plugins)
        for plugin in plugins:
            if plugin.spec != backbone.spec:
                raise KadaptError(
                    f"plug-in {plugin.config.name!r} was built for {plugin.spec}, backbone is {backbone.spec}"
                )
            backbone.require(plugin.backbone_needs, f"{plugin.kind} plug-in {plugin.config.name!r}")
        self.head = head

    def train(self, mode: bool = True) -> KnowledgeModel:
        """Frozen plug-ins (no trainable parameter) stay in eval mode: no dropout noise in features."""
        super().train(mode)
        for plugin in self.plugins:
            if not _trains(plugin):
                plugin.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        """``.to()`` / ``.cuda()`` / ``.cpu()`` / ``.half()`` / ``.double()`` ... move or cast the
        backbone with the plug-ins and the head (it is outside the module tree, so ``nn.Module``
        alone would leave it behind)."""
        super()._apply(fn, recurse)
        self.backbone.model._apply(fn, recurse)
        return self

    @property
    def feature_size(self) -> int:
        return self.backbone.spec.hidden_size + sum(p.output_size for p in self.plugins)

    def required_layers(self) -> list[int]:
        layers = {self.backbone.spec.num_layers}
        for plugin in self.plugins:
            layers.update(plugin.required_layers())
        return sorted(layers)

    def backbone_pass(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      states: dict[int, torch.Tensor] | None = None, batch: dict | None = None) -> Pass:
        """The shared pass: ``states`` (e.g. from the hidden-state cache) or one backbone pass."""
        if states is None:
            states = self.backbone.encode(input_ids, attention_mask, self.required_layers())
        else:
            states = {k: v.to(self.backbone.dtype) for k, v in states.items()}
        return Pass(self.backbone, input_ids, attention_mask, states, batch)

    def plugin_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       states: dict[int, torch.Tensor] | None = None,
                       batch: dict | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(backbone_last, [plugin_1 output, ...])`` from ONE backbone pass (see :meth:`backbone_pass`)."""
        pass_ = self.backbone_pass(input_ids, attention_mask, states, batch)
        return pass_.last, [plugin(pass_) for plugin in self.plugins]

    def combine(self, last: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        """How plug-in outputs join the backbone's: concatenation (fine-tuning fusions override)."""
        parts = [last, *outputs]
        dtype = parts[-1].dtype
        return torch.cat([p.to(dtype) for p in parts], dim=-1)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 states: dict[int, torch.Tensor] | None = None, batch: dict | None = None) -> torch.Tensor:
        """``[backbone_last ; plugin outputs]``: (B, S, feature_size); arguments as :meth:`plugin_outputs`."""
        return self.combine(*self.plugin_outputs(input_ids, attention_mask, states, batch))

    def batch_features(self, batch: dict) -> torch.Tensor:
        """Features of a collated batch: cached states when it carries them; grouped inputs (B, n, S)
        encoded as B·n rows and returned as (B, n, S, feature_size); the plug-ins then see the batch's
        per-row keys flattened the same way (:func:`grouped_batch`)."""
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        if input_ids.dim() == 3:
            feats = self.features(input_ids.flatten(0, 1), mask.flatten(0, 1), None, grouped_batch(batch))
            return feats.unflatten(0, input_ids.shape[:2])
        return self.features(input_ids, mask, states_from_batch(batch), batch)

    def forward(self, batch: dict) -> ObjectiveOutput:
        if self.head is None:
            raise KadaptError("KnowledgeModel has no head; call .features() for raw features")
        return self.head.step(self, batch)

    def prepare_run(self, options: dict, source: str = "recipe") -> None:
        """Hand each plug-in its ``options[kind]`` (a fine-tuning recipe's ``plugin_options``); a kind
        no plug-in of the model has is an error."""
        kinds = {p.kind for p in self.plugins}
        unknown = sorted(set(options) - kinds)
        if unknown:
            raise KadaptError(f"{source}: plugin_options names {unknown}; the model's plug-ins are {sorted(kinds)}")
        for plugin in self.plugins:
            plugin.prepare_run(options.get(plugin.kind, {}), self.backbone, source)

    def entity_linking(self):
        """The first plug-in's entity linking (:meth:`Plugin.entity_linking`), or None."""
        return next((e for e in (p.entity_linking() for p in self.plugins) if e is not None), None)

    def on_step(self, info: StepInfo) -> None:
        """Forwarded to every plug-in that trains in this run (TRELM: knowledge-path re-selection)."""
        for plugin in self.plugins:
            if _trains(plugin):
                plugin.on_step(info)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Every plug-in's state outside ``state_dict``, keyed ``plugins.<i>::<name>``."""
        return {f"plugins.{i}::{k}": v for i, p in enumerate(self.plugins) for k, v in p.extra_tensors().items()}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        grouped: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            prefix, name = key.split("::", 1)
            grouped.setdefault(int(prefix.split(".")[1]), {})[name] = value
        for index, plugin_tensors in grouped.items():
            self.plugins[index].load_extra_tensors(plugin_tensors)


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())
