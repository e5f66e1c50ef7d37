"""SemEval-2010 Task 8 relation classification: the ``@``/``#`` relation head scored the official way.

The official score (scorer v1.2, evaluation (iii)) is the macro-averaged F1 of a "(9+1)-way
classification with directionality taken into account": for each relation type ``T`` (direction
stripped) that occurs in the gold labels, other than ``Other``,

* correct(T) = examples whose predicted label equals the gold label (type and direction) of type T;
* P(T) = correct(T) / #predictions of type T (a wrong-direction prediction counts as predicted T);
* R(T) = correct(T) / #gold labels of type T;

and macro-F1 = mean over those types of 2·P·R / (P + R). Micro P/R/F1 over the same types are reported
too. :func:`semeval_counts` / :func:`summarize_semeval` live in :mod:`kadapt.metrics.scoring` (re-exported
here) and are shared with the ``semeval2010_f1`` metric.
"""
from __future__ import annotations

import torch

from kadapt.core.objective import register_objective
from kadapt.metrics.scoring import (  # noqa: F401  (re-exported)
    OTHER,
    relation_type,
    semeval_counts,
    summarize_semeval,
)
from kadapt.tasks.relation_classification import RelationClassification


@register_objective
class SemEvalRelationClassification(RelationClassification):
    """Relation head with markers (subject = e1, object = e2) and the official SemEval-2010 score."""

    name = "relation_semeval"
    main_metric = "macro_f1"

    def __init__(self, feature_size: int, labels: list[str], dropout: float = 0.1, pooling: str = "marker",
                 other_label: str = OTHER):
        super().__init__(feature_size, labels, dropout=dropout, no_relation_label=None, pooling=pooling)
        self.other_label = other_label

    @staticmethod
    def label_set(records: list) -> list[str]:
        return sorted({r.label for r in records})

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        labels = self.vocab.to_list()
        gold = [labels[i] for i in batch["labels"].tolist()]
        pred = [labels[i] for i in logits.argmax(-1).tolist()]
        return semeval_counts(gold, pred, self.other_label)

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return summarize_semeval(counts)

    def config_dict(self) -> dict:
        config = super().config_dict()
        config.pop("no_relation_label")
        return {**config, "other_label": self.other_label}
