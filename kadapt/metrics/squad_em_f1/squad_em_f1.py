"""SQuAD v1.1 / MLQA exact match and F1 (official definitions; see kadapt.metrics.scoring).

compute(predictions=[str], references=[[str, ...]], scheme="squad"|"mlqa", languages=[str] | None)
→ {"exact_match": 0..100, "f1": 0..100} (percentages, as the official scripts print them).
"""
import datasets
import evaluate

from kadapt.metrics.scoring import qa_scores


class SquadEmF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Extractive QA exact match and token F1 with the official SQuAD v1.1 or MLQA normalisation.",
            citation="Rajpurkar et al. 2016 (SQuAD); Lewis et al. 2020 (MLQA)",
            inputs_description="predictions: answer strings; references: lists of gold answer strings",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references, scheme="squad", languages=None):
        languages = languages or ["en"] * len(predictions)
        if len(languages) != len(predictions):
            raise ValueError(f"{len(languages)} languages for {len(predictions)} predictions")
        scores = [qa_scores(p, r, lang, scheme) for p, r, lang in zip(predictions, references, languages)]
        n = max(1, len(scores))
        return {"exact_match": 100.0 * sum(s[0] for s in scores) / n, "f1": 100.0 * sum(s[1] for s in scores) / n}
