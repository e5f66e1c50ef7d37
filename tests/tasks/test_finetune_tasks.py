"""``kadapt finetune`` / ``kadapt evaluate`` end to end for each task recipe (the *_small recipes with a
tiny backbone and the official-format fixtures): predictions, metrics, and a re-evaluation that
reproduces the test metrics from the saved run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from run_kit import factual_recipe, write_yaml

from kadapt.cli.app import main
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import recipe_from_dict

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

CASES = {
    # recipe: (data files, objective config overrides, main test metric)
    "open_entity_small": ({"train": "open_entity_crowd.json", "dev": "open_entity_crowd.json",
                             "test": "open_entity_crowd.json"}, {}, "micro_f1"),
    "figer": ({"train": "figer.json", "dev": "figer.json", "test": "figer.json"}, {}, "micro_f1"),
    "searchqa": ({"train": "searchqa/train.json", "dev": "searchqa/train.json", "test": "searchqa/train.json"},
                 {"doc_stride": 8}, "f1"),
    "quasar_t": ({"train": "quasar_t/test.json", "dev": "quasar_t/test.json", "test": "quasar_t/test.txt"},
                 {"doc_stride": 8}, "f1"),
    "semeval2010_small": ({"train": "semeval2010_task8.txt", "dev": "semeval2010_task8.txt",
                       "test": "semeval2010_task8.txt"}, {}, "macro_f1"),
    "tacred_small": ({"train": "tacred.json", "dev": "tacred.json", "test": "tacred.json"}, {}, "micro_f1"),
    "fewrel_small": ({"train": "fewrel_4rel.json", "dev": "fewrel_4rel.json", "test": "fewrel_4rel.json"},
                     {"n_way": 2, "train_episodes": 8, "dev_episodes": 4, "eval_episodes": 6, "holdout_relations": 2,
                      "hidden_size": 16}, "accuracy"),
}


@pytest.fixture(scope="module")
def plugin(world, backbone_dir, backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    return infuse(recipe_from_dict(factual_recipe(world, backbone_dir, root / "f", epochs=1)), backbone=backbone).plugin_dir


@pytest.mark.parametrize("name", sorted(CASES))
def test_finetune_and_evaluate_task_recipe(name, backbone_dir, plugin, tmp_path, capsys):
    files, objective_config, metric = CASES[name]
    recipe = yaml.safe_load((REPO / "recipes" / "finetune" / f"{name}.yaml").read_text())
    recipe["backbone"]["name_or_path"] = str(backbone_dir)
    recipe["data"] = {**recipe["data"], "train": None, "dev": None, "test": None, "limit": None, "dev_fraction": 0.0,
                      **{split: str(FIXTURES / f) for split, f in files.items()}}
    recipe["objective"].setdefault("config", {}).update(objective_config)
    recipe["training"].update({"epochs": 2, "batch_size": 4, "cpu": True})
    path = write_yaml(tmp_path / f"{name}.yaml", recipe)
    out = tmp_path / "run"
    assert main(["finetune", str(path), "--plugins", str(plugin), "--out", str(out)]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metric in metrics["test"] and metric in metrics["dev"]
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert predictions and all({"source", "gold", "prediction"} <= set(p) for p in predictions)
    head_config = json.loads((out / "head_config.json").read_text())
    assert head_config["objective"] == recipe["objective"]["name"] and head_config["plugins"] == [str(plugin)]

    assert main(["evaluate", str(out), "--data", str(FIXTURES / files["test"])]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["examples"] == len(predictions)
    for key, value in metrics["test"].items():
        assert again[key] == pytest.approx(value, abs=1e-9), key
    assert (out / "eval" / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()
