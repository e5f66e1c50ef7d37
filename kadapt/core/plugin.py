"""The plug-in contract every family implements, and its dataclass config base.

A plug-in is an ``nn.Module`` built from ``(config, BackboneSpec)``. Its ``placement`` says how it
attaches to the frozen backbone:

* ``"outside"``  — reads hidden states at ``required_layers()`` of one shared backbone pass (K-Adapter, XLM-K);
* ``"reentrant"`` — modifies states and runs frozen upper layers again (JAKET);
* ``"inside"``   — changes the backbone pass itself and needs a pass of its own (TRELM).
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import PluginFormatError


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


class Plugin(nn.Module):
    """Base class. Subclasses set ``kind``, ``placement`` and ``config_class``."""

    kind: ClassVar[str] = ""
    placement: ClassVar[str] = "outside"
    config_class: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig, spec: BackboneSpec):
        super().__init__()
        self.config = config
        self.spec = spec

    def required_layers(self) -> tuple[int, ...]:
        """Backbone hidden-state indices this plug-in reads (0 = embeddings)."""
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        """Width of the feature this plug-in adds to ``[backbone_last ; ...]``."""
        raise NotImplementedError

    def forward(self, states: Mapping[int, torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def card_notes(self) -> list[str]:
        """Family-specific lines for the model card (e.g. how the size relates to the paper's)."""
        return []

    def num_parameters(self) -> int:
        """The plug-in's own weights (objective heads are separate modules)."""
        return sum(p.numel() for p in self.parameters())
