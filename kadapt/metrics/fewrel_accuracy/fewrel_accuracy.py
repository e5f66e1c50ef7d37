"""FewRel N-way K-shot accuracy: the fraction of episode queries assigned their true class
(predictions and references are class indices within each episode, as ``fewshot_pair`` writes them)."""
import datasets
import evaluate


class FewrelAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Han et al., FewRel, EMNLP 2018",
            inputs_description="predictions, references: class per episode query",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        if not references:
            return {"accuracy": 0.0, "episodes": 0}
        correct = sum(p == r for p, r in zip(predictions, references))
        return {"accuracy": correct / len(references), "episodes": len(references)}
