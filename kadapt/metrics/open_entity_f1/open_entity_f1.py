"""Entity typing scores (Ling & Weld 2012) over label sets: strict accuracy, loose macro and loose micro
precision / recall / F1. K-Adapter reports P, R and micro-F1 for Open Entity = ``precision``,
``recall``, ``micro_f1`` here. Inputs are lists of type labels per mention (possibly empty)."""
import datasets
import evaluate

from kadapt.metrics.scoring import typing_scores


class OpenEntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Ling and Weld, Fine-Grained Entity Recognition, AAAI 2012",
            inputs_description="predictions, references: lists of label strings",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return typing_scores(references, predictions)
