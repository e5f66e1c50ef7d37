"""KG-only downstream task: entity classification on a (possibly unseen) KG (JAKET §Entity Classification).

LM1 + GNN, no LM2: the entity memory (LM1 over descriptions, recomputed for the new KG) feeds the
composition GAT, and a linear layer classifies each entity's output. Semi-supervised transductive
setting: the labelled entities are split 20/20/60 into train/dev/test; the training part can be cut
to a fraction (the paper's 100/20/5% columns). Training samples neighbours (10 per hop); evaluation
reads every neighbour in one full-graph pass. Model selection by dev accuracy; test at the best dev.

Training goes through the project's one loop (:func:`kadapt.runs.loop.train`): the classifier is
wrapped as a :class:`~kadapt.core.model.TrainableModel` (:class:`EntityClassifierModel`) whose head
(:class:`EntityAccuracy`) gives the loss and the accuracy counts. Each dev evaluation also counts the
test entities apart (``test_accuracy``; one full-graph pass serves both), so the test accuracy of the
best dev round is read from the loop's ``dev_history`` instead of restoring a saved state.
"""
from __future__ import annotations

import copy
import math
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.core.model import TrainableModel
from kadapt.core.objective import ObjectiveOutput, safe_div
from kadapt.kg import CSR, KnowledgeGraph, NeighborSampler
from kadapt.plugins.jaket.gat import CompositionGAT


@dataclass
class EntitySplit:
    train: torch.Tensor
    dev: torch.Tensor
    test: torch.Tensor


def split_entities(labels: torch.Tensor, fractions: tuple[float, float, float] = (0.2, 0.2, 0.6),
                   train_fraction: float = 1.0, seed: int = 0) -> EntitySplit:
    """Seeded split of the labelled entities; ``train_fraction`` keeps that share of the train part."""
    labelled = torch.nonzero(labels >= 0).flatten()
    if labelled.numel() < 3:
        raise KadaptError(f"entity classification needs labelled entities; found {labelled.numel()}")
    order = labelled[torch.randperm(labelled.numel(), generator=torch.Generator().manual_seed(seed))]
    n_train, n_dev = int(fractions[0] * order.numel()), int(fractions[1] * order.numel())
    train = order[:n_train]
    keep = max(1, round(train_fraction * train.numel()))
    return EntitySplit(train[:keep], order[n_train:n_train + n_dev], order[n_train + n_dev:])


class EntityClassifier(nn.Module):
    """Linear classifier over GAT outputs (``gat=None``: over the input features alone)."""

    def __init__(self, hidden: int, num_classes: int, gat: CompositionGAT | None, dropout: float = 0.1):
        super().__init__()
        self.gat = gat
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor, relations: torch.Tensor, entities: torch.Tensor,
                sampler: NeighborSampler | None, generator: torch.Generator) -> torch.Tensor:
        """Training: logits of ``entities`` over a neighbour sample drawn around them."""
        if self.gat is None or sampler is None:
            x = features[entities]
        else:
            sub = sampler.sample(entities, generator)
            x = self.gat(features[sub.nodes], relations, sub.edge_index, sub.edge_type)[: entities.numel()]
        return self.classifier(self.dropout(x))

    def all_logits(self, features: torch.Tensor, relations: torch.Tensor, csr: CSR | None) -> torch.Tensor:
        """Inference: logits of every entity, the GAT reading all neighbours (one full-graph pass)."""
        x = features
        if self.gat is not None and csr is not None:
            targets = torch.repeat_interleave(torch.arange(csr.num_nodes), csr.degree())
            x = self.gat(features, relations, torch.stack([csr.neighbors, targets]), csr.relations)
        return self.classifier(x)


class EntityAccuracy:
    """Head of :class:`EntityClassifierModel`: cross-entropy loss and accuracy counts. Rows whose
    ``split`` is 1 (evaluation batches that carry the test entities beside the dev ones) are counted
    apart and summarised as ``test_accuracy``; model selection reads ``accuracy`` (dev) only."""

    main_metric = "accuracy"

    @staticmethod
    def loss(logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(logits, batch["labels"])

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        right = logits.argmax(-1) == batch["labels"]
        test = batch["split"] == 1 if "split" in batch else torch.zeros_like(right)
        return {"n": float((~test).sum()), "correct": float((right & ~test).sum()),
                "test_n": float(test.sum()), "test_correct": float((right & test).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        metrics = {"accuracy": safe_div(counts["correct"], counts["n"])}
        if counts.get("test_n"):
            metrics["test_accuracy"] = safe_div(counts["test_correct"], counts["test_n"])
        return metrics

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return logits.argmax(-1).tolist()


class _NoBackbone:
    """Stands in for ``model.backbone`` (the loop moves it to its device): the LM1 memory is precomputed."""

    def to(self, *args, **kwargs) -> _NoBackbone:
        return self

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """No backbone layers run here: nothing to recompute."""


class EntityClassifierModel(TrainableModel):
    """:class:`EntityClassifier` over fixed entity features and a KG, as the training loop wants it:
    ``forward(batch)`` with ``batch["entity"]`` (and ``labels``). Training samples neighbours with a
    seeded generator of its own (saved in checkpoints); evaluation is one full-graph pass. CPU only:
    the features, the CSR and the sampler stay on the CPU."""

    def __init__(self, classifier: EntityClassifier, features: torch.Tensor, relations: torch.Tensor,
                 csr: CSR | None, fanouts: tuple[int, ...] = (10, 10), seed: int = 0):
        super().__init__()
        object.__setattr__(self, "backbone", _NoBackbone())  # not a submodule
        self.classifier = classifier
        self.head = EntityAccuracy()
        self.features, self.relations, self.csr = features, relations, csr
        self.sampler = NeighborSampler(csr, fanouts, seed) if csr is not None else None
        self.generator = torch.Generator().manual_seed(seed + 1)

    def forward(self, batch: dict) -> ObjectiveOutput:
        entities = batch["entity"]
        if self.training:
            logits = self.classifier(self.features, self.relations, entities, self.sampler, self.generator)
        else:
            logits = self.classifier.all_logits(self.features, self.relations, self.csr)[entities]
        return ObjectiveOutput(self.head.loss(logits, batch) if "labels" in batch else None, logits)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"sampler::generator": self.generator.get_state()}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "sampler::generator" in tensors:
            self.generator.set_state(tensors["sampler::generator"])


def collate_entities(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack examples into long tensors; a list-valued field (a whole evaluation group) is concatenated."""
    def column(key: str) -> torch.Tensor:
        values = [v for e in examples for v in (e[key] if isinstance(e[key], list) else [e[key]])]
        return torch.tensor(values, dtype=torch.long)

    return {key: column(key) for key in examples[0]}


def entity_examples(split: EntitySplit, labels: torch.Tensor) -> tuple[list[dict], list[dict]]:
    """Training examples (one per entity) and the evaluation set: two groups, dev (split 0) and test
    (split 1), so that one evaluation batch (one full-graph pass) scores both."""
    train = [{"entity": int(e), "labels": int(labels[e])} for e in split.train]
    groups = [{"entity": part.tolist(), "labels": labels[part].tolist(), "split": [index] * part.numel()}
              for index, part in enumerate((split.dev, split.test))]
    return train, groups


def train_entity_classifier(graph: KnowledgeGraph, features: torch.Tensor, relations: torch.Tensor,
                            labels: torch.Tensor, split: EntitySplit, gat: CompositionGAT | None, *,
                            steps: int = 400, evals: int = 8, lr: float = 1e-3, batch_size: int = 64,
                            fanouts: tuple[int, ...] = (10, 10), inverse: bool = True, seed: int = 0,
                            run_dir: str | Path | None = None) -> dict:
    """Train through :func:`kadapt.runs.loop.train` (the GAT, when given, is fine-tuned too); returns
    dev/test accuracy at the best dev round (``evals`` rounds, every ``ceil(steps / evals)`` steps and at
    the last step). ``run_dir`` keeps metrics.jsonl and curves.png (default: a temporary folder);
    the loop's checkpoints are removed (this function does not resume)."""
    from kadapt.runs.loop import TrainConfig, evaluate_model, train
    from kadapt.runs.run_log import MetricsLog, plot_run

    if steps < 1:
        raise KadaptError(f"entity classification needs at least one training step, got {steps}")
    torch.manual_seed(seed)
    num_classes = int(labels.max()) + 1
    classifier = EntityClassifier(features.shape[1], num_classes, copy.deepcopy(gat) if gat is not None else None)
    model = EntityClassifierModel(classifier, features, relations, graph.csr(inverse) if gat is not None else None,
                                  fanouts, seed)
    every = max(1, math.ceil(steps / evals))
    # as the former hand-written loop: AdamW with weight decay 0.01 (torch's default; the loop spares biases),
    # no clipping, a constant learning rate
    config = TrainConfig(batch_size=batch_size, lr=lr, weight_decay=0.01, max_grad_norm=0.0, max_steps=steps,
                         lr_schedule="constant",
                         eval_every=every, seed=seed, cpu=True, mixed_precision="no", keep_checkpoints=1)
    train_set, eval_set = entity_examples(split, labels)
    temporary = tempfile.TemporaryDirectory(prefix="entity_classifier-") if run_dir is None else None
    with temporary or nullcontext(run_dir) as folder:
        folder = Path(folder)
        result = train(model, train_set, eval_set, config, folder, pad_id=0, collate_fn=collate_entities,
                       dev_collate_fn=collate_entities)
        history = list(result.dev_history)
        if result.global_step % every:  # the last step is a round too
            metrics, _ = evaluate_model(model, eval_set, batch_size, 0, torch.device("cpu"),
                                        collate_fn=collate_entities)
            history.append({"step": result.global_step, "split": "dev", **metrics})
            MetricsLog(folder / "metrics.jsonl", append=True).write(history[-1])
            plot_run(folder / "metrics.jsonl", folder / "curves.png")
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    best = max(history, key=lambda r: r["accuracy"])  # the first best round, as before
    return {"dev_accuracy": best["accuracy"], "test_accuracy": best.get("test_accuracy", 0.0),
            "best_step": best["step"], "train_entities": int(split.train.numel()), "dev_history": history}
