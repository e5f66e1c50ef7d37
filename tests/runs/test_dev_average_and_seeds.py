"""Several dev files (one per language, say): each evaluated, metrics averaged; several seeds: mean ± std."""
from __future__ import annotations

import json
import shutil

import pytest

from kadapt.core.errors import RecipeError
from kadapt.runs.finetune import finetune, seed_statistics
from kadapt.runs.loop import average_metrics
from kadapt.runs.recipe import effective_settings, recipe_from_dict
from run_kit import finetune_recipe


def _two_dev_files(world, tmp_path):
    records = json.loads(world["task_facts_dev"].read_text(encoding="utf-8"))  # a JSON array (trex_rc)
    a, b = tmp_path / "dev-a.json", tmp_path / "dev-b.json"
    a.write_text(json.dumps(records[: len(records) // 3]), encoding="utf-8")
    b.write_text(json.dumps(records[len(records) // 3:]), encoding="utf-8")
    return a, b


def test_dev_list_is_evaluated_per_file_and_averaged(world, backbone_dir, backbone, tmp_path):
    a, b = _two_dev_files(world, tmp_path)
    recipe = finetune_recipe(world, backbone_dir, tmp_path / "ft", epochs=1)
    recipe["data"]["dev"] = [str(a), str(b)]
    result = finetune(recipe_from_dict(recipe), backbone=backbone)
    dev = result.metrics["dev"]
    assert set(dev["per_dev"]) == {"dev-a.json", "dev-b.json"}
    per = dev["per_dev"].values()
    for key in ("accuracy", "micro_f1"):
        assert dev[key] == pytest.approx(sum(r[key] for r in per) / 2)  # unweighted: the files differ in size
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["per_dev"].keys() == dev["per_dev"].keys() for r in lines if r["split"] == "dev"] == [True]
    assert effective_settings(recipe_from_dict(recipe))["data"]["resolved"]["dev"] == [str(a), str(b)]


def test_dev_files_with_the_same_name_are_an_error(world, backbone_dir, backbone, tmp_path):
    a, _ = _two_dev_files(world, tmp_path)
    (tmp_path / "x").mkdir()
    shutil.copy(a, tmp_path / "x" / a.name)
    recipe = finetune_recipe(world, backbone_dir, tmp_path / "ft", epochs=1)
    recipe["data"]["dev"] = [str(a), str(tmp_path / "x" / a.name)]
    with pytest.raises(RecipeError, match="data.dev: two files share a name"):
        finetune(recipe_from_dict(recipe), backbone=backbone)


def test_seeds_run_once_each_and_report_mean_and_sample_std(world, backbone_dir, backbone, tmp_path):
    recipe = finetune_recipe(world, backbone_dir, tmp_path / "seeds", epochs=1, seeds=[1, 2])
    result = finetune(recipe_from_dict(recipe), backbone=backbone)
    summary = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert summary == result.metrics and summary["seeds"] == [1, 2]
    runs = [json.loads((tmp_path / "seeds" / f"seed-{s}" / "metrics.json").read_text()) for s in (1, 2)]
    for split in ("dev", "test"):
        values = [r[split]["accuracy"] for r in runs]
        mean = sum(values) / 2
        assert summary[split]["accuracy"]["values"] == values
        assert summary[split]["accuracy"]["mean"] == pytest.approx(mean)
        assert summary[split]["accuracy"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert (tmp_path / "seeds" / "seed-2" / "recipe.yaml").read_text().count("seed: 2") == 1


def test_statistics_by_hand():
    stats = seed_statistics([{"f1": 0.5, "n": 10, "flag": True}, {"f1": 0.7, "n": 10, "flag": False}, {"f1": 0.9, "n": 10}])
    assert set(stats) == {"f1", "n"}
    assert stats["f1"]["mean"] == pytest.approx(0.7) and stats["f1"]["std"] == pytest.approx(0.2)
    assert seed_statistics([{"f1": 0.4}])["f1"] == {"mean": 0.4, "std": 0.0, "values": [0.4]}
    assert average_metrics([{"acc": 0.2, "lang": "de"}, {"acc": 0.6, "lang": "fr"}]) == {"acc": pytest.approx(0.4)}
