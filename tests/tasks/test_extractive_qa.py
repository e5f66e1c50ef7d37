"""Extractive QA head: windows over long contexts, spans mapped back to the original characters,
EM/F1 with the official normalisation, training end to end and a reloaded run."""
from __future__ import annotations

import json

import pytest
import torch
from task_kit import batch_of, fit

from kadapt.data.formats import read_records
from kadapt.core.errors import DataError
from kadapt.runs.finetune import evaluate_run, finetune
from kadapt.runs.recipe import recipe_from_dict


@pytest.fixture
def squad(fixtures):
    return read_records("squad", fixtures / "squad_v1.json")


def test_long_context_is_windowed_and_gold_tokens_cover_the_answer(head_model, squad):
    model = head_model("extractive_qa", {"doc_stride": 16, "max_question_tokens": 16})
    tok = model.backbone.tokenizer
    for record in squad:
        feats = model.head.encode(record, tok, 64)
        text, start = record.answers[0]
        w, i, j = feats["answer_window"], feats["answer_start"], feats["answer_end"]
        assert feats["start_char"][w][i] == start and feats["end_char"][w][j] == start + len(text)
        assert all(len(row) <= 64 for row in feats["input_ids"])
    long = model.head.encode(squad[0], tok, 64)
    assert len(long["input_ids"]) > 3  # the 600-character context needs several windows
    assert long["answer_window"] > 0  # "Saint Bernadette Soubirous" is at the end of the context


def test_best_span_is_cut_from_the_original_context(head_model, squad):
    model = head_model("extractive_qa", {"doc_stride": 16, "max_question_tokens": 16})
    batch = batch_of(model, squad, 64)
    logits = torch.full((*batch["input_ids"].shape, 2), -5.0)
    for b in range(len(squad)):  # put the peak on the gold tokens of the gold window
        w, i, j = (int(batch[k][b]) for k in ("answer_window", "answer_start", "answer_end"))
        logits[b, w, i, 0] = logits[b, w, j, 1] = 5.0
    spans = model.head.best_spans(logits, batch)
    assert spans == [r.answers[0][0] for r in squad]  # exact characters, incl. case and inner spaces
    assert model.head.summarize(model.head.count(logits, batch)) == {"exact_match": 1.0, "f1": 1.0, "questions": 4}


def test_counts_use_the_official_normalisation(head_model, squad):
    model = head_model("extractive_qa", {"doc_stride": 16, "max_question_tokens": 16, "max_answer_tokens": 2})
    batch = batch_of(model, squad[3:], 64)  # "Berlin" (one token), context "Paris is the capital ..."
    logits = torch.full((*batch["input_ids"].shape, 2), -5.0)
    starts = batch["start_char"][0, 0].tolist()
    first = starts.index(0)  # "Paris": prediction "Paris is" is cut by max_answer_tokens=2 -> "Paris is"
    logits[0, 0, first, 0], logits[0, 0, first + 1, 1], logits[0, 0, first + 5, 1] = 5.0, 4.0, 6.0
    (span,) = model.head.best_spans(logits, batch)
    assert span == "Paris is"  # the higher end score at first+5 lies beyond the 2-token limit
    counts = model.head.count(logits, batch)
    assert counts == {"n": 1.0, "exact_match": 0.0, "f1": 0.0}


def test_loss_goes_down(head_model, squad):
    model = head_model("extractive_qa", {"doc_stride": 16, "max_question_tokens": 16})
    losses = fit(model, batch_of(model, squad, 64), steps=25)
    assert losses[-1] < 0.5 * losses[0]


def test_answer_outside_every_window_is_a_data_error(head_model, squad):
    model = head_model("extractive_qa", {"doc_stride": 4, "max_question_tokens": 16})
    record = squad[0]
    long_answer = "Catholic character. Atop the Main Building's gold dome is a golden statue"
    bad = type(record)(record.id, record.question, record.context, ((long_answer, 37),), "en", "dev.json:data[0]")
    with pytest.raises(DataError, match="fits in no window of 24 tokens"):
        model.head.encode(bad, model.backbone.tokenizer, 24)


def test_finetune_and_reload_mlqa_run(fixtures, backbone_dir, tmp_path):
    data = str(fixtures / "mlqa" / "dev-context-de-question-de.json")
    recipe = recipe_from_dict({
        "kind": "finetune", "name": "mlqa-tiny", "backbone": {"name_or_path": str(backbone_dir)},
        "objective": {"name": "extractive_qa", "config": {"scheme": "mlqa", "doc_stride": 8, "max_question_tokens": 12}},
        "data": {"format": "mlqa", "train": data, "dev": data, "test": data, "max_length": 40},
        "training": {"epochs": 3, "batch_size": 2, "lr": 1e-2, "cpu": True, "mixed_precision": "no"},
        "finetune": {"backbone": "lora", "lora_r": 2},
        "output": {"dir": str(tmp_path / "run")}})
    result = finetune(recipe)
    assert set(result.metrics["test"]) == {"exact_match", "f1", "questions"}
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["de1", "de2"]
    again = evaluate_run(tmp_path / "run", data)
    assert {k: again[k] for k in result.metrics["test"]} == result.metrics["test"]
