"""Accuracy: the fraction of predictions equal to their reference (labels as strings or ints).

compute(predictions=[label], references=[label]) → {"accuracy": 0..1}.
"""
import datasets
import evaluate


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of exactly matching predictions.",
            citation="",
            inputs_description="predictions, references: labels (strings)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        n = len(predictions)
        return {"accuracy": sum(p == r for p, r in zip(predictions, references)) / n if n else 0.0}
