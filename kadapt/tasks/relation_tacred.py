"""TACRED relation classification: the ``@``/``#`` relation head (K-Adapter §4.3) with TACRED's score.

The official TACRED scorer reports micro precision / recall / F1 over the relations other than
``no_relation``: a prediction of ``no_relation`` is never counted as a guess, a gold ``no_relation``
never as a gold relation, and a guess is correct when it equals the gold relation.
:func:`tacred_scores` is shared with the ``tacred_f1`` metric module; the head's own counts
(``RelationClassification.count``) follow the same definition.
"""
from __future__ import annotations

from collections.abc import Sequence

from kadapt.core.objective import register_objective, safe_div
from kadapt.tasks.relation_classification import RelationClassification

NO_RELATION = "no_relation"


def tacred_scores(gold: Sequence[str], pred: Sequence[str], no_relation: str = NO_RELATION) -> dict[str, float]:
    """Micro P/R/F1 without ``no_relation`` (TACRED scorer) and plain accuracy."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    guessed = sum(p != no_relation for p in pred)
    actual = sum(g != no_relation for g in gold)
    correct = sum(g == p and p != no_relation for g, p in zip(gold, pred))
    precision, recall = safe_div(correct, guessed), safe_div(correct, actual)
    return {"precision": precision, "recall": recall, "micro_f1": safe_div(2 * precision * recall, precision + recall),
            "accuracy": safe_div(sum(g == p for g, p in zip(gold, pred)), len(gold))}


@register_objective
class TacredRelationClassification(RelationClassification):
    """``relation_classification`` with ``no_relation`` as the negative label by default."""

    name = "relation_tacred"
    main_metric = "micro_f1"

    def __init__(self, feature_size: int, labels: list[str], dropout: float = 0.1,
                 no_relation_label: str | None = NO_RELATION, pooling: str = "marker"):
        super().__init__(feature_size, labels, dropout=dropout, no_relation_label=no_relation_label, pooling=pooling)

    @staticmethod
    def label_set(records: list) -> list[str]:
        return sorted({r.label for r in records})
