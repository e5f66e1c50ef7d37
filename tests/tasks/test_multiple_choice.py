"""Multiple-choice head on CosmosQA: one row per choice, first-token scores, softmax over choices;
a fine-tuned run (K-Adapter fusion, full backbone) reloads bit-identically."""
from __future__ import annotations

import json

import torch
from task_kit import batch_of, fit

from kadapt.data.formats import read_records
from kadapt.runs.finetune import evaluate_run, finetune
from kadapt.runs.recipe import recipe_from_dict


def test_choices_are_rows_and_scored_on_the_first_token(head_model, fixtures):
    records = read_records("cosmosqa", fixtures / "cosmosqa.jsonl")
    model = head_model("multiple_choice")
    tok = model.backbone.tokenizer
    batch = batch_of(model, records, 48)
    assert batch["input_ids"].shape[:2] == (3, 4) and batch["input_ids"].shape[2] <= 48
    row = tok.convert_ids_to_tokens(batch["input_ids"][0, 1].tolist())
    assert row[0] == "[CLS]" and row.count("[SEP]") == 2  # [CLS] context [SEP] question answer [SEP]
    out = model(batch)
    assert out.logits.shape == (3, 4)
    logits = torch.tensor([[0.0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])  # gold 1, 3, 0 -> 2 of 3
    assert model.head.summarize(model.head.count(logits, batch)) == {"accuracy": 2 / 3}
    tuned = head_model("multiple_choice", {"dropout": 0.0}, backbone_mode="full")
    tuned.eval()
    before = tuned(batch).loss.item()
    fit(tuned, batch, steps=30, lr=3e-3)
    assert tuned(batch).loss.item() < 0.5 * before


def test_unlabelled_test_file_gets_predictions_but_no_score(head_model, fixtures):
    model = head_model("multiple_choice")
    batch = batch_of(model, read_records("cosmosqa", fixtures / "cosmosqa_test.jsonl"), 48)
    out = model(batch)
    assert out.loss is None and model.head.count(out.logits, batch) == {"n": 0.0, "correct": 0.0}
    assert len(model.head.predict(out.logits, batch)) == 1


def test_finetune_full_backbone_and_reload(fixtures, backbone_dir, tmp_path):
    data = str(fixtures / "cosmosqa.jsonl")
    recipe = recipe_from_dict({
        "kind": "finetune", "name": "cosmos-tiny", "backbone": {"name_or_path": str(backbone_dir)},
        "objective": {"name": "multiple_choice"},
        "data": {"format": "cosmosqa", "train": data, "dev": data, "test": data, "max_length": 48},
        "training": {"epochs": 2, "batch_size": 2, "lr": 1e-3, "cpu": True, "mixed_precision": "no"},
        "finetune": {"backbone": "full", "fusion": "kadapter"},
        "output": {"dir": str(tmp_path / "run")}})
    result = finetune(recipe)
    assert (tmp_path / "run" / "backbone.safetensors").exists()
    again = evaluate_run(tmp_path / "run", data)
    assert again["accuracy"] == result.metrics["test"]["accuracy"]
    first = [json.loads(x)["prediction"] for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    second = [json.loads(x)["prediction"] for x in (tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert first == second
