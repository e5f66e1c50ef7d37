"""FIGER entity typing scores (Ling & Weld 2012), as K-Adapter's Table 2 reports them: strict accuracy
(the predicted type set equals the gold set), loose macro F1 (precision and recall averaged per mention)
and loose micro F1 (pooled over all type decisions). Inputs are lists of FIGER type paths per mention
(``/person``, ``/person/artist``); a parent type counts as its own label, as in the data."""
import datasets
import evaluate

from kadapt.metrics.scoring import typing_scores


class FigerF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Ling and Weld, Fine-Grained Entity Recognition, AAAI 2012",
            inputs_description="predictions, references: lists of FIGER type strings per mention",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        s = typing_scores(references, predictions)
        return {"strict_accuracy": s["strict_accuracy"], "loose_macro_precision": s["macro_precision"],
                "loose_macro_recall": s["macro_recall"], "loose_macro_f1": s["macro_f1"],
                "loose_micro_precision": s["precision"], "loose_micro_recall": s["recall"],
                "loose_micro_f1": s["micro_f1"]}
