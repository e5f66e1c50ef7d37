"""SemEval-2010 Task 8 relation classification: the ``@``/``#`` relation head scored the official way.

The official score (scorer v1.2, evaluation (iii)) is the macro-averaged F1 of a "(9+1)-way
classification with directionality taken into account": for each relation type ``T`` (direction
stripped) that occurs in the gold labels, other than ``Other``,

* correct(T) = examples whose predicted label equals the gold label (type and direction) of type T;
* P(T) = correct(T) / #predictions of type T (a wrong-direction prediction counts as predicted T);
* R(T) = correct(T) / #gold labels of type T;

and macro-F1 = mean over those types of 2·P·R / (P + R). Micro P/R/F1 over the same types are reported
too. :func:`semeval_counts` / :func:`summarize_semeval` are shared with the ``semeval2010_f1`` metric.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from kadapt.core.objective import register_objective, safe_div
from kadapt.tasks.relation_classification import RelationClassification

OTHER = "Other"
_DIRECTION = re.compile(r"\(e[12],e[12]\)$")


def relation_type(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; other labels unchanged."""
    return _DIRECTION.sub("", label)


def semeval_counts(gold: Sequence[str], pred: Sequence[str], other: str = OTHER) -> dict[str, float]:
    """Summable per-type counts: ``correct:T``, ``pred:T``, ``gold:T`` plus ``n`` and ``exact``."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    counts: dict[str, float] = {"n": 0.0, "exact": 0.0}

    def add(key: str, value: float = 1.0) -> None:
        counts[key] = counts.get(key, 0.0) + value

    for g, p in zip(gold, pred):
        gt, pt = relation_type(g), relation_type(p)
        add("n")
        add("exact", float(g == p))
        add(f"gold:{gt}")
        add(f"pred:{pt}")
        add(f"correct:{gt}", float(g == p))
    for key in [k for k in counts if k.endswith(f":{other}")]:
        counts[key.replace(f":{other}", ":__other__")] = counts.pop(key)
    return counts


def summarize_semeval(counts: dict[str, float]) -> dict[str, float]:
    """Official macro-F1 (and micro P/R/F1, accuracy) from :func:`semeval_counts`."""
    types = sorted(k.split(":", 1)[1] for k in counts if k.startswith("gold:") and counts[k] > 0
                   and k != "gold:__other__")
    f1s, ps, rs = [], [], []
    correct = proposed = answer = 0.0
    for t in types:
        c, p, g = counts.get(f"correct:{t}", 0.0), counts.get(f"pred:{t}", 0.0), counts[f"gold:{t}"]
        prec, rec = safe_div(c, p), safe_div(c, g)
        ps.append(prec)
        rs.append(rec)
        f1s.append(safe_div(2 * prec * rec, prec + rec))
        correct, proposed, answer = correct + c, proposed + p, answer + g
    micro_p, micro_r = safe_div(correct, proposed), safe_div(correct, answer)
    n = len(types)
    return {"accuracy": safe_div(counts.get("exact", 0.0), counts.get("n", 0.0)),
            "macro_precision": safe_div(sum(ps), n), "macro_recall": safe_div(sum(rs), n),
            "macro_f1": safe_div(sum(f1s), n),
            "micro_precision": micro_p, "micro_recall": micro_r,
            "micro_f1": safe_div(2 * micro_p * micro_r, micro_p + micro_r)}


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
