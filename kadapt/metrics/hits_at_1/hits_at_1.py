"""Hits@1 for KG question answering: the fraction of questions whose top-ranked entity is an answer.

compute(predictions=[top entity name], references=[[answer name, ...]]) → {"hits_at_1": 0..1}.
A question may have several answers (MetaQA); any of them counts.
"""
import datasets
import evaluate


class HitsAt1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Hits@1 of top-1 entity predictions against answer sets.",
            citation="Zhang et al. 2018 (MetaQA); Sun et al. 2018 (GRAFT-Net)",
            inputs_description="predictions: the top-ranked entity per question; references: its answer names",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references):
        hits = [float(p in set(r)) for p, r in zip(predictions, references)]
        return {"hits_at_1": sum(hits) / len(hits) if hits else 0.0}
