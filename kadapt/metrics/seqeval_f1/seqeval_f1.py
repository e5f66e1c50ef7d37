"""Entity-level (chunk) micro precision/recall/F1 of BIO/IOBES tag sequences, conlleval/seqeval rules.

compute(predictions=[[tag, ...]], references=[[tag, ...]]) → {"precision", "recall", "f1"} in 0..1.
"""
import datasets
import evaluate

from kadapt.metrics.scoring import prf, span_counts


class SeqevalF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Micro entity F1 over exactly matching (type, start, end) chunks (conlleval chunking).",
            citation="Tjong Kim Sang & De Meulder 2003 (CoNLL-2003 conlleval); seqeval",
            inputs_description="predictions, references: lists of tag sequences of equal lengths",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references):
        totals = {"tp": 0.0, "pred": 0.0, "gold": 0.0}
        for i, (pred, gold) in enumerate(zip(predictions, references)):
            if len(pred) != len(gold):
                raise ValueError(f"sequence {i}: {len(pred)} predicted tags for {len(gold)} gold tags")
            for key, value in span_counts(pred, gold).items():
                totals[key] += value
        return prf(totals["tp"], totals["pred"], totals["gold"])
