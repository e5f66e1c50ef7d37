"""Objective contract: a head over ``[backbone_last ; plug-ins]`` features, its loss and metrics.

The same contract serves infusion objectives and downstream task heads. An objective

* ``configure(config, train_records)`` (class method) → its constructor arguments completed from the
  training data (label inventories: ``label_set``; XLM-K: relations and tasks);
* ``bind(model)`` → called once the model it sits on is complete (heads tied to the backbone's
  embeddings, heads that read a knowledge graph through a plug-in); default: nothing;
* ``prepare_records(records, split, seed)`` → the units to encode (default: the records unchanged);
* ``encode(record, tokenizer, max_length)`` → a feature dict for one record (may raise ``DataError``);
* ``step(model, batch)`` → ``ObjectiveOutput``; default ``forward(model.batch_features(batch), batch)``
  (heads that encode several sequences per record, or read a KG, run the model themselves);
* ``forward(features, batch)`` → ``ObjectiveOutput(loss, logits)``;
* ``count(logits, batch)`` → summable counts (they add up across batches and processes);
* ``summarize(counts)`` → metrics; ``predict(logits, batch)`` → JSON-able predictions;
* ``config_dict()`` → what is needed to rebuild the head (saved beside the plug-in);
* ``extra_tensors()`` → tensors saved to ``memory.safetensors`` instead of the heads file (XLM-K's
  candidate queues).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from kadapt.core.errors import KadaptError, RegistryError


@dataclass
class ObjectiveOutput:
    """Loss (None without labels) and logits. Indexable like a ``transformers`` model output, so
    ``transformers.Trainer`` reads it: ``out["loss"]``, ``out[0]`` (the loss when there is one, else the
    logits), ``out[1:]``."""

    loss: torch.Tensor | None
    logits: torch.Tensor

    def to_tuple(self) -> tuple:
        return tuple(v for v in (self.loss, self.logits) if v is not None)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in ("loss", "logits"):
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]


class Objective(nn.Module):
    name: ClassVar[str] = ""
    #: key of the main dev metric (higher is better), used for plots and model selection
    main_metric: ClassVar[str] = "accuracy"

    def __init__(self, feature_size: int):
        super().__init__()
        self.feature_size = feature_size

    @classmethod
    def configure(cls, config: dict, train_records: list) -> dict:
        """Constructor arguments from the recipe's ``config``, completed from the training records:
        by default a ``labels`` list from :meth:`label_set` when the config gives none."""
        config = dict(config)
        if "labels" not in config:
            labels = cls.label_set(train_records)
            if labels is not None:
                config["labels"] = labels
        return config

    @classmethod
    def configure_for_backbone(cls, config: dict, spec) -> dict:
        """Constructor arguments completed from the backbone's sizes (``spec``: a BackboneSpec), e.g.
        the vocabulary of an MLM term. Default: ``config`` unchanged."""
        return config

    @staticmethod
    def label_set(records: list) -> list[str] | None:
        """The label inventory of ``records`` (None: this objective has no label list)."""
        return None

    def bind(self, model) -> None:
        """Called with the complete model (backbone, plug-ins, this head) before training/evaluation."""

    def kept_positions(self) -> tuple[str, ...] | None:
        """Batch keys (``*_pos``) whose token positions are the only feature rows this head reads
        through the default :meth:`step`: a frozen model's features may then be computed once and
        kept at those positions (``kadapt compare``). None (default): the head reads whole sequences."""
        return None

    def step(self, model, batch: dict) -> ObjectiveOutput:
        """Loss and logits of one batch through ``model`` (a KnowledgeModel)."""
        return self(model.batch_features(batch), batch)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors of this head that belong in ``memory.safetensors`` rather than the heads file."""
        return {}

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

    def text_record(self, text: str, label=None, source: str = "text"):
        """A record of this head from raw ``text`` in the task's natural markup (relation heads:
        ``@ subject @ ... # object #``), for ``model.predict(texts)``; ``label`` is None when predicting.
        Default: this head reads no raw text."""
        raise KadaptError(f"{source}: the {self.name!r} head does not read raw text; predict from a data file "
                          "(kadapt predict RUN --data FILE)")

    def scores(self, logits: torch.Tensor, batch: dict) -> list:
        """The confidence of each prediction of :meth:`predict` (default: the softmax probability of the
        arg-max class)."""
        return logits.float().softmax(-1).max(-1).values.tolist()


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Make ``cls`` buildable under ``cls.name`` (recipes' ``objective.name``); a name taken by another
    class is refused."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set `name`")
    if cls.name in _OBJECTIVES and _OBJECTIVES[cls.name] is not cls:
        raise RegistryError(f"objective {cls.name!r} is already registered by {_OBJECTIVES[cls.name].__module__}")
    _OBJECTIVES[cls.name] = cls
    return cls


def objective_owner(name: str) -> type[Objective] | None:
    """The class registered under ``name`` (None when the name is free)."""
    return _OBJECTIVES.get(name)


def unregister_objective(name: str) -> None:
    _OBJECTIVES.pop(name, None)


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
    except (TypeError, ValueError) as err:
        raise KadaptError(f"{source}: bad config for objective {name!r}: {err}") from None


def safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0
