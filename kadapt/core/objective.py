"""Objective contract: a head over ``[backbone_last ; plug-ins]`` features, its loss and metrics.

The same contract serves infusion objectives and downstream task heads. An objective

* ``prepare_records(records, split, seed)`` → the units to encode (default: the records unchanged);
* ``encode(record, tokenizer, max_length)`` → a feature dict for one record (may raise ``DataError``);
* ``forward(features, batch)`` → ``ObjectiveOutput(loss, logits)``;
* ``count(logits, batch)`` → summable counts (they add up across batches and processes);
* ``summarize(counts)`` → metrics; ``predict(logits, batch)`` → JSON-able predictions;
* ``config_dict()`` → what is needed to rebuild the head (saved beside the plug-in).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from kadapt.core.errors import KadaptError


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


class Objective(nn.Module):
    name: ClassVar[str] = ""
    #: key of the main dev metric (higher is better), used for plots and model selection
    main_metric: ClassVar[str] = "accuracy"

    def __init__(self, feature_size: int):
        super().__init__()
        self.feature_size = feature_size

    def prepare_records(self, records: list, split: str, seed: int) -> list:
        """The units this objective encodes, from one split's records (``split``: train/dev/test or a
        file name). Default: the records themselves; few-shot heads sample seeded episodes here."""
        return records

    def encode(self, record, tokenizer, max_length: int) -> dict:
        raise NotImplementedError

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        raise NotImplementedError

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        raise NotImplementedError

    def config_dict(self) -> dict:
        raise NotImplementedError


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set `name`")
    _OBJECTIVES[cls.name] = cls
    return cls


def objective_class(name: str, source: str = "objective") -> type[Objective]:
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise KadaptError(f"{source}: unknown objective {name!r}; known: {sorted(_OBJECTIVES)}") from None


def registered_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def build_objective(name: str, feature_size: int, config: dict, source: str = "objective") -> Objective:
    cls = objective_class(name, source)
    try:
        return cls(feature_size, **config)
    except TypeError as err:
        raise KadaptError(f"{source}: bad config for objective {name!r}: {err}") from None


def safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0
