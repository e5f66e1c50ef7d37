"""Bad task inputs through ``kadapt finetune`` (issue 3): a task file in the wrong format, a dev/test
label missing from the training label set, an entity cut off by truncation. Each is one DataError
naming the file and line, or -- under ``data.on_error: skip`` -- a counted skip in metrics.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kadapt.core.errors import DataError
from kadapt.runs.finetune import finetune
from kadapt.runs.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _recipe(tmp_path, name: str, backbone: Path, **data):
    recipe = yaml.safe_load((REPO / "recipes" / "finetune" / f"{name}.yaml").read_text())
    recipe["backbone"]["name_or_path"] = str(backbone)
    recipe["data"] = {**recipe["data"], "train": None, "dev": None, "test": None, "limit": None,
                      "dev_fraction": 0.0, **data}
    recipe["training"].update({"epochs": 1, "batch_size": 4, "cpu": True})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return load_recipe(path)


@pytest.mark.parametrize("name, wrong, message", [
    ("open_entity", "semeval2010_task8.txt", r"semeval2010_task8\.txt:1: malformed JSON"),
    ("squad", "sample.conllu", r"sample\.conllu:1: malformed JSON"),
    ("figer", "open_entity_crowd.json", r"open_entity_crowd\.json:1: key 'sent' must be a non-empty string"),
    ("semeval2010", "tacred.json", r"tacred\.json:1: expected <id><TAB>\"<sentence>\""),
    ("searchqa", "squad_v1.json", r"squad_v1\.txt: missing: a DS-QA split needs both"),
])
def test_task_file_in_the_wrong_format(name, wrong, message, tmp_path, tiny_backbone_dir):
    recipe = _recipe(tmp_path, name, tiny_backbone_dir("bert"), train=str(FIXTURES / wrong))
    with pytest.raises(DataError, match=message):
        finetune(recipe, out=tmp_path / "run")


def test_wrong_format_under_skip_is_an_error_not_an_empty_run(tmp_path, tiny_backbone_dir):
    recipe = _recipe(tmp_path, "ud_pos", tiny_backbone_dir("bert"), train=str(FIXTURES / "conll2003.txt"),
                     on_error="skip")
    with pytest.raises(DataError, match=r"conll2003\.txt: no usable 'conllu_upos' records \(4 skipped"):
        finetune(recipe, out=tmp_path / "run")


def _tacred_without(tmp_path, relation: str) -> Path:
    rows = [r for r in json.loads((FIXTURES / "tacred.json").read_text()) if r["relation"] != relation]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    return path


def test_test_label_missing_from_the_training_labels(tmp_path, tiny_backbone_dir):
    train = _tacred_without(tmp_path, "org:founded_by")  # the 4th fixture example's relation
    recipe = _recipe(tmp_path, "tacred", tiny_backbone_dir("bert"), train=str(train), test=str(FIXTURES / "tacred.json"))
    with pytest.raises(DataError, match=r"tacred\.json:#3: unknown label 'org:founded_by' \(known: 3 labels\)"):
        finetune(recipe, out=tmp_path / "run")
    recipe.data.on_error = "skip"
    metrics = finetune(recipe, out=tmp_path / "run-skip").metrics
    assert sum(metrics["skipped_records"].values()) == 1
    predictions = (tmp_path / "run-skip" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 3  # the unseen-label example is counted, not scored


def test_entity_cut_off_by_truncation(tmp_path, tiny_backbone_dir):
    fixture = FIXTURES / "figer.json"
    recipe = _recipe(tmp_path, "figer", tiny_backbone_dir("bert"), train=str(fixture), test=str(fixture), max_length=12)
    with pytest.raises(DataError, match=r"figer\.json\[\d\]: mention cut off by truncation \(max_length=12\)"):
        finetune(recipe, out=tmp_path / "run")
    recipe.data.on_error = "skip"
    metrics = finetune(recipe, out=tmp_path / "run-skip").metrics
    skipped = metrics["skipped_records"]
    assert skipped.get("mention cut off by truncation (max_length=12)", 0) >= 2
    kept = (tmp_path / "run-skip" / "predictions.jsonl").read_text().splitlines()
    assert 0 < len(kept) < 6
