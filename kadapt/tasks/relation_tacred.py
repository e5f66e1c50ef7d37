"""TACRED relation classification: the ``@``/``#`` relation head (K-Adapter §4.3) with TACRED's score.

The official TACRED scorer reports micro precision / recall / F1 over the relations other than
``no_relation``: a prediction of ``no_relation`` is never counted as a guess, a gold ``no_relation``
never as a gold relation, and a guess is correct when it equals the gold relation.
:func:`tacred_scores` lives in :mod:`kadapt.metrics.scoring` (re-exported here) and is shared with the
``tacred_f1`` metric module; the head's own counts (``RelationClassification.count``) follow the same
definition.
"""
from __future__ import annotations

from kadapt.core.objective import register_objective
from kadapt.metrics.scoring import NO_RELATION, tacred_scores  # noqa: F401  (re-exported)
from kadapt.tasks.relation_classification import RelationClassification


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
