"""SemEval-2010 Task 8 official score: macro-averaged F1 of the (9+1)-way classification with
directionality taken into account (scorer v1.2, evaluation iii), ``Other`` excluded; micro P/R/F1 and
accuracy too. Inputs are label strings such as ``Cause-Effect(e1,e2)`` or ``Other``."""
import datasets
import evaluate

from kadapt.metrics.scoring import OTHER, semeval_counts, summarize_semeval


class Semeval2010F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Hendrickx et al., SemEval-2010 Task 8, 2010",
            inputs_description="predictions, references: label strings",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references, other_label: str = OTHER):
        return summarize_semeval(semeval_counts(references, predictions, other_label))
