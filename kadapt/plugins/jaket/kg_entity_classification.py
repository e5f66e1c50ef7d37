"""Entity classification on a knowledge graph, KG-only (JAKET §Entity Classification): LM1 + GNN, no LM2.

The unit is an entity of a KG (possibly unseen at infusion): its LM1 memory row and its neighbours'
feed the JAKET plug-in's composition GAT, and a linear layer classifies the GAT output. No text goes
through LM2. Data: ``data.format: kg_entities`` with train = dev = test = the KG folder (a KG-BERT
folder with ``entity2category.tsv``; entities without a category are not units). The labelled
entities are split 20/20/60 with a seed (:func:`~kadapt.plugins.jaket.entity_classifier.split_entities`,
the same split as the Table 3 benchmark); ``train_fraction`` keeps 100/20/5% of the training part.
Fine-tune with ``finetune: {plugins: trainable}`` to tune the GAT as the paper does (the benchmark's
setting); evaluation reads every neighbour within the GAT's hops.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import LabelVocab
from kadapt.data.policy import ErrorPolicy
from kadapt.core.errors import DataError, KadaptError
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    safe_div,
)

log = logging.getLogger(__name__)
TASK = "kg_entity_classification"


@dataclass
class KGEntityRecord:
    """One categorised entity of a KG folder."""

    id: str
    index: int
    name: str
    label: str
    source: str = ""


def read_kg_entities(path: str | Path, policy: ErrorPolicy | None = None) -> list[KGEntityRecord]:
    """Every entity of the KG at ``path`` that has a category, in KG order."""
    from kadapt.kg import read_kg

    graph = read_kg(path, policy=policy)
    cats = graph.entity_categories or [None] * graph.num_entities
    records = [KGEntityRecord(graph.entity_ids[i], i, graph.entity_names[i], c, f"{graph.source}:{graph.entity_ids[i]}")
               for i, c in enumerate(cats) if c is not None]
    if not records:
        raise DataError(str(path), None, "no entity has a category (entity2category.tsv missing or empty)")
    log.info("%s: %d of %d entities have a category", graph.source, len(records), graph.num_entities)
    return records


class KGEntityClassification(Objective):
    """Linear classifier over JAKET's KG-side entity embeddings (memory + GAT)."""

    name = TASK
    main_metric = "accuracy"

    def __init__(self, feature_size: int, labels: list[str], kg: str, memory: str | None = None,
                 fractions: tuple[float, float, float] = (0.2, 0.2, 0.6), train_fraction: float = 1.0,
                 split_seed: int | None = None, dropout: float = 0.1):
        super().__init__(feature_size)
        if not labels:
            raise KadaptError(f"{TASK} needs a non-empty label list")
        if len(fractions) != 3 or sum(fractions) > 1.0 + 1e-6 or min(fractions) <= 0:
            raise KadaptError(f"{TASK}: fractions {list(fractions)} must be 3 positive shares summing to <= 1")
        if not 0.0 < train_fraction <= 1.0:
            raise KadaptError(f"{TASK}: train_fraction must be in (0, 1], got {train_fraction}")
        self.vocab = LabelVocab.from_list(list(labels))
        self.kg, self.memory = kg, memory
        self.fractions, self.train_fraction, self.split_seed = tuple(fractions), train_fraction, split_seed
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier: nn.Linear | None = None

    @staticmethod
    def label_set(records: list[KGEntityRecord]) -> list[str]:
        return sorted({r.label for r in records})

    def bind(self, model) -> None:
        """Attach the KG (and its memory) to the model's JAKET plug-in; size the classifier to it."""
        from kadapt.plugins.jaket.kg_context import attach_kg, single_jaket_plugin
        from kadapt.core.paths import resolve_path

        plugin = single_jaket_plugin(model, TASK)
        attach_kg(model, resolve_path(self.kg), resolve_path(self.memory) if self.memory else None)
        self.classifier = nn.Linear(plugin.output_size, len(self.vocab))

    def prepare_records(self, records: list, split: str, seed: int) -> list:
        """The split's part of the seeded 20/20/60 split (any other name: every record, e.g. a new KG)."""
        from kadapt.plugins.jaket.entity_classifier import split_entities

        if split not in ("train", "dev", "test"):
            return records
        labels = torch.tensor([self.vocab.id(r.label, r.source) if r.label in self.vocab else -1 for r in records])
        parts = split_entities(labels, self.fractions, self.train_fraction,
                               self.split_seed if self.split_seed is not None else seed)
        return [records[i] for i in sorted(getattr(parts, split).tolist())]

    def encode(self, record: KGEntityRecord, tokenizer, max_length: int) -> dict:
        # input_ids (the entity's name) only keep the shared collate/bucketing happy; the head reads the KG
        ids = tokenizer(record.name, truncation=True, max_length=max_length)["input_ids"]
        return {"input_ids": list(ids), "entity": record.index, "labels": self.vocab.id(record.label, record.source)}

    def step(self, model, batch: dict) -> ObjectiveOutput:
        from kadapt.plugins.jaket.kg_context import single_jaket_plugin

        if self.classifier is None:
            raise KadaptError(f"{TASK}: head not bound to a model (bind) yet")
        embeddings = single_jaket_plugin(model, TASK).entity_embeddings(batch["entity"])
        logits = self.classifier(self.dropout(embeddings.to(self.classifier.weight.dtype)))
        loss = F.cross_entropy(logits.float(), batch["labels"]) if "labels" in batch else None
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        right = logits.argmax(-1) == batch["labels"]
        return {"n": float(right.numel()), "correct": float(right.sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"accuracy": safe_div(counts["correct"], counts["n"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        labels = self.vocab.to_list()
        return [labels[i] for i in logits.argmax(-1).tolist()]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list(), "kg": self.kg, "memory": self.memory,
                "fractions": list(self.fractions), "train_fraction": self.train_fraction,
                "split_seed": self.split_seed, "dropout": self._dropout_p}
