"""The plug-in contract every family implements, and its dataclass config base.

A plug-in is an ``nn.Module`` built from ``(config, BackboneSpec)`` with ONE entry point,
``forward(pass_)``: :class:`Pass` carries the backbone, the input ids and mask, the hidden states of
the shared backbone pass (computed live or read from the hidden-state cache) and the batch. What a
family does with it is its own business: K-Adapter and XLM-K read ``pass_.states``; JAKET merges
knowledge into an LM1 state and runs ``pass_.backbone.run_layers``; TRELM runs a pass of its own.

``reads_shared_states_only`` says whether the output depends on nothing but ``pass_.states`` (and the
mask): only such plug-ins can train from the hidden-state cache or join a joint infusion run.
``placement`` (outside / reentrant / inside) is metadata for the model card and ``plugin-info``.
Lifecycle hooks have no-op defaults: :meth:`Plugin.on_step` (called before each optimizer step of a
run that trains the plug-in), :meth:`Plugin.extra_tensors` / :meth:`Plugin.load_extra_tensors`
(state kept outside ``state_dict``: memory files and training checkpoints) and
:meth:`Plugin.card_notes`.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kadapt.core.backbone import BackboneSpec, Fingerprint
from kadapt.core.errors import PluginFormatError
from kadapt.core.verbs import verb


@dataclass
class PluginConfig:
    """Base config; subclasses add family fields, each with ``metadata={"help": ...}``."""

    name: str = field(default="plugin", metadata={"help": "Human-readable plug-in name (used in the zoo and model card)."})

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "config"):
        """Build strictly: unknown keys and wrongly typed values are errors naming ``source``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise PluginFormatError(
                f"{source}: unknown {cls.__name__} key(s) {unknown}; known: {sorted(known)}"
            )
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in data.items():
            values[key] = _coerce(value, hints[key], f"{source}: key {key!r}")
        return cls(**values)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value


def _coerce(value, hint, where: str):
    """Minimal runtime type check/coercion for JSON/YAML values (tuples arrive as lists)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except PluginFormatError as err:
                errors.append(str(err))
        raise PluginFormatError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise PluginFormatError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else typing.Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if not isinstance(value, bool):
            raise PluginFormatError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PluginFormatError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginFormatError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise PluginFormatError(f"{where}: expected a string, got {value!r}")
        return value
    return value


@dataclass
class Pass:
    """One backbone pass as every plug-in of a model sees it.

    ``states`` maps hidden-state index (0 = embeddings, ``num_layers`` = last) to (B, S, H); it holds
    at least the union of the model's ``required_layers()`` and the last state."""

    backbone: object  # kadapt.core.backbone.FrozenBackbone (or a tuned backbone)
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    states: Mapping[int, torch.Tensor]
    batch: Mapping | None = None

    @property
    def last(self) -> torch.Tensor:
        """The backbone's last hidden state of this pass."""
        return self.states[self.backbone.spec.num_layers]


@dataclass
class StepInfo:
    """What :meth:`Plugin.on_step` gets before an optimizer step: the model being trained (with its
    head), the step's first batch, the optimizer step about to be taken and the epoch."""

    model: nn.Module
    batch: Mapping
    step: int
    epoch: int
    optimizer: object = None


class Plugin(nn.Module):
    """Base class. Subclasses set ``kind``, ``placement``, ``config_class`` and implement
    ``required_layers``, ``output_size`` and ``forward(pass_)``."""

    kind: ClassVar[str] = ""
    #: metadata for cards and ``plugin-info``: "outside", "reentrant" or "inside"
    placement: ClassVar[str] = "outside"
    #: True when ``forward`` reads nothing but ``pass_.states`` and the mask (cache, joint infusion)
    reads_shared_states_only: ClassVar[bool] = True
    config_class: ClassVar[type[PluginConfig]] = PluginConfig
    #: what the family needs from the backbone (``kadapt.core.architectures.CAPABILITIES``): "states"
    #: (hidden states read from a pass), "layers" (layers run one by one), "ffn" (per-layer FFN blocks)
    backbone_needs: ClassVar[tuple[str, ...]] = ("states",)

    def __init__(self, config: PluginConfig, spec: BackboneSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        #: the folder this plug-in was loaded from and the backbone fingerprint recorded there (None for
        #: a plug-in built in code); ``save_pretrained`` without a backbone writes against that fingerprint
        self.loaded_from = None
        self.recorded_backbone: Fingerprint | None = None

    @classmethod
    def from_pretrained(cls, name_or_path, backbone, *, revision: str | None = None) -> Plugin:
        """Strictly load a plug-in folder or Hub repo id (at ``revision``) for ``backbone`` (fingerprint
        checked), frozen. Called on a family's class, the folder must hold that kind."""
        return verb("plugin_from_pretrained")(name_or_path, backbone, revision=revision, expected_kind=cls.kind or None)

    def save_pretrained(self, directory, backbone=None, *, overwrite: bool = False, card: dict | None = None):
        """Write the plug-in folder (config, safetensors, model card) for ``backbone`` (default: the
        backbone recorded where it was loaded from)."""
        return verb("plugin_save_pretrained")(self, directory, backbone, overwrite=overwrite, card=card)

    def push_to_hub(self, repo_id: str, backbone=None, **options):
        """Save to a temporary folder and upload it as one commit to ``repo_id`` (``huggingface_hub``)."""
        return verb("plugin_push_to_hub")(self, repo_id, backbone, **options)

    def required_layers(self) -> tuple[int, ...]:
        """Backbone hidden-state indices this plug-in reads (0 = embeddings)."""
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        """Width of the feature this plug-in adds to ``[backbone_last ; ...]``."""
        raise NotImplementedError

    def forward(self, pass_: Pass) -> torch.Tensor:
        """The plug-in's feature block (B, S, ``output_size``) for one backbone pass."""
        raise NotImplementedError

    def on_step(self, info: StepInfo) -> None:
        """Called before each optimizer step of a run in which this plug-in trains."""

    def prepare_run(self, options: Mapping, backbone, source: str = "recipe") -> None:
        """Run-time options from a fine-tuning recipe's ``plugin_options.<kind>`` (JAKET: the KG to
        read); the default accepts none."""
        if options:
            raise PluginFormatError(f"{source}: plugin_options.{self.kind}: the {self.kind} plug-in takes "
                                    f"no run-time options, got {sorted(options)}")

    def entity_linking(self):
        """How encoders should link entity mentions for this plug-in (an object with ``rows``,
        ``linker``, ``stats``: :class:`kadapt.data.mentions.EntityLinking`), or None."""
        return None

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """State outside ``state_dict`` that a plug-in folder (``memory.safetensors``) and a training
        checkpoint must hold (TRELM's sparse memory bank)."""
        return {}

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`extra_tensors` returned."""
        if tensors:
            raise PluginFormatError(f"{self.kind} plug-in keeps no extra tensors, got {sorted(tensors)[:3]}")

    def card_notes(self) -> list[str]:
        """Family-specific lines for the model card (e.g. how the size relates to the paper's)."""
        return []

    def num_parameters(self) -> int:
        """The plug-in's own weights (objective heads are separate modules)."""
        return sum(p.numel() for p in self.parameters())
