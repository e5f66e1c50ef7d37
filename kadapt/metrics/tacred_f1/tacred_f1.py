"""TACRED score: micro precision / recall / F1 over relations other than ``no_relation`` (the official
TACRED scorer's definition), plus accuracy. Inputs are relation label strings."""
import datasets
import evaluate

from kadapt.metrics.scoring import NO_RELATION, tacred_scores


class TacredF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Zhang et al., Position-aware Attention and Supervised Data Improve "
                                          "Slot Filling, EMNLP 2017", inputs_description="predictions, references: label strings",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references, no_relation: str = NO_RELATION):
        return tacred_scores(references, predictions, no_relation)
