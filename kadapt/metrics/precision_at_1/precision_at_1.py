"""LAMA P@1: the fraction of queries whose top-ranked token is the gold object (Petroni et al. 2019).

compute(predictions=[[token, ...] ranked best first], references=[token]) → {"precision_at_1": 0..1}.
Queries are macro-averaged per relation by LAMA's tables; pass ``relations=[...]`` to get
``precision_at_1_macro`` (mean over relations) as well.
"""
from collections import defaultdict

import datasets
import evaluate


class PrecisionAt1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Precision at 1 of ranked token predictions.",
            citation="Petroni et al. 2019 (LAMA)",
            inputs_description="predictions: ranked token lists; references: the gold token",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, relations=None):
        hits = [float(bool(p) and p[0] == r) for p, r in zip(predictions, references)]
        out = {"precision_at_1": sum(hits) / len(hits) if hits else 0.0}
        if relations is not None:
            per = defaultdict(list)
            for hit, rel in zip(hits, relations):
                per[rel].append(hit)
            out["precision_at_1_macro"] = sum(sum(v) / len(v) for v in per.values()) / len(per) if per else 0.0
        return out
