"""``kadapt compare``: twins, cells, resume, bad inputs and the bootstrap statistics, on the tiny world."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from run_kit import factual_recipe, finetune_recipe

from kadapt.core.errors import KadaptError
from kadapt.runs.compare import CompareError, PluginSource, compare
from kadapt.runs.recipe import recipe_from_dict
from kadapt.store.plugin_dir import load_plugin


def _sources(world, backbone_dir, tmp_path):
    infuse = recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "unused", epochs=1,
                                             cache_dir=str(tmp_path / "cache")), "factual.yaml")
    return [PluginSource("F", recipe=infuse)]


def _task(world, backbone_dir, tmp_path, **data):
    raw = finetune_recipe(world, backbone_dir, tmp_path / "unused-ft", epochs=2, cache_dir=str(tmp_path / "cache"))
    raw["data"].update(data)
    return recipe_from_dict(raw, "facts.yaml")


@pytest.fixture(scope="module")
def finished(world, backbone_dir, backbone, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    result = compare([_task(world, backbone_dir, tmp)], _sources(world, backbone_dir, tmp), head_seeds=[1, 2],
                     infusion_seeds=[3, 4], out=tmp / "out", draws=50, backbone=backbone, progress=False)
    return tmp, result


def test_cells_cover_every_variant_and_seed(finished):
    _, result = finished
    rows = result.results["rows"]
    got = sorted((r["variant"], r["twin"], r["infusion_seed"], r["head_seed"]) for r in rows)
    want = sorted([("bare", False, None, h) for h in (1, 2)] + [("lower layers 0,1", False, None, h) for h in (1, 2)]
                  + [(v, v.startswith("R("), s, h) for v in ("F", "R(F)") for s in (3, 4) for h in (1, 2)])
    assert got == want
    by_variant = {r["variant"]: r for r in result.results["summary"]}
    assert set(by_variant["F"]) >= {"vs_bare", "vs_twin", "vs_lower_layers"}
    assert "vs_twin" not in by_variant["R(F)"] and "vs_bare" not in by_variant["bare"]
    assert by_variant["F"]["vs_twin"]["pairs"] == 4 and by_variant["F"]["test"]["n"] == 4


def test_twin_is_the_infusion_start_same_kind_config_shapes(finished, backbone):
    tmp, _ = finished
    out = tmp / "out"
    for seed in (3, 4):
        infused = load_plugin(out / "infusions" / "F" / f"seed-{seed}" / "plugin", backbone)
        twin = load_plugin(out / "twins" / "F" / f"seed-{seed}", backbone)
        assert twin.record["kind"] == infused.record["kind"] and twin.record["config"] == infused.record["config"]
        a, b = infused.plugin.state_dict(), twin.plugin.state_dict()
        assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
        # the twin is exactly the plug-in the seeded infusion started from (same draw as StandardPipeline.build)
        from kadapt.core.family import build_plugin

        torch.manual_seed(seed)
        start = build_plugin(infused.record["kind"], infused.record["config"], backbone.spec).state_dict()
        assert all(torch.equal(start[k], b[k]) for k in b)
        assert any(not torch.equal(a[k], b[k]) for k in a)  # infusion changed the weights


def test_resumed_compare_gives_the_same_table(finished, world, backbone_dir, backbone, tmp_path, monkeypatch):
    tmp, result = finished
    import kadapt.runs.compare as cmp

    real, calls = cmp.run_cell, []

    def dies_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    out = tmp_path / "out"
    shutil.copytree(tmp / "out" / "infusions", out / "infusions")  # reuse the infusions (speed), redo the rest
    monkeypatch.setattr(cmp, "run_cell", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        compare([_task(world, backbone_dir, tmp)], _sources(world, backbone_dir, tmp), head_seeds=[1, 2],
                infusion_seeds=[3, 4], out=out, draws=50, backbone=backbone, progress=False)
    assert len(list((out / "cells").rglob("row.json"))) == 3
    with pytest.raises(KadaptError, match="already holds a comparison; pass --resume"):
        compare([_task(world, backbone_dir, tmp)], _sources(world, backbone_dir, tmp), head_seeds=[1, 2],
                infusion_seeds=[3, 4], out=out, draws=50, backbone=backbone, progress=False)
    monkeypatch.setattr(cmp, "run_cell", real)
    resumed = compare([_task(world, backbone_dir, tmp)], _sources(world, backbone_dir, tmp), head_seeds=[1, 2],
                      infusion_seeds=[3, 4], out=out, draws=50, backbone=backbone, progress=False, resume=True)
    assert resumed.table == result.table
    assert (out / "compare.json").read_text() == (tmp / "out" / "compare.json").read_text().replace(str(tmp / "out"), str(out))


# ---------------------------------------------------------------------------------------------- bad inputs


def _write(tmp_path: Path, name: str, raw: dict) -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_cli_bad_inputs_are_one_line(world, backbone_dir, tiny_backbone_dir, tmp_path, capsys):
    from kadapt.cli.app import main

    no_test = finetune_recipe(world, backbone_dir, tmp_path / "x")
    no_test["data"].pop("test")
    path = _write(tmp_path, "no_test.yaml", no_test)
    assert main(["compare", str(path), "--out", str(tmp_path / "c1")]) == 2
    err = capsys.readouterr().err
    assert err == (f"kadapt: error: {path}: no test split (data.test is not set and data.test_fraction is 0); "
                   "compare reports test metrics: add data.test or data.test_fraction\n")

    other = tiny_backbone_dir("bert", num_layers=2, hidden_size=32, num_heads=2, intermediate_size=48)
    plug = _write(tmp_path, "other.yaml", factual_recipe(world, other, tmp_path / "y"))
    task = _write(tmp_path, "task.yaml", finetune_recipe(world, backbone_dir, tmp_path / "z"))
    assert main(["compare", str(task), "--plugins", f"F={plug}", "--out", str(tmp_path / "c2")]) == 2
    err = capsys.readouterr().err
    assert err == (f"kadapt: error: {plug}: plug-in 'F' is infused on backbone {str(other)!r}, but {task} uses "
                   f"{str(backbone_dir)!r}\n")


def test_plugin_folder_for_another_backbone_is_one_line(world, backbone_dir, tiny_backbone_dir, tmp_path, capsys):
    from kadapt.cli.app import main
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.family import build_plugin
    from kadapt.store.plugin_dir import save_plugin

    other = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", num_layers=2, hidden_size=32, num_heads=2,
                                                             intermediate_size=48))
    folder = save_plugin(build_plugin("kadapter", {"name": "p", "adapter_size": 8, "num_attention_heads": 2,
                                                   "intermediate_size": 16, "num_transformer_layers": 1},
                                      other.spec), tmp_path / "plug", other.fingerprint)
    task = _write(tmp_path, "task.yaml", finetune_recipe(world, backbone_dir, tmp_path / "z"))
    assert main(["compare", str(task), "--plugins", str(folder), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kadapt: error: {folder / 'kadapt_config.json'}: plug-in 'plug' was infused on another "
                          f"backbone than {task}'s ({backbone_dir}): ") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- statistics


def _accuracy(counts: dict) -> dict:
    return {"accuracy": counts["correct"] / counts["n"]}


def test_bootstrap_matches_a_hand_loop():
    from kadapt.runs.compare_stats import example_weights, paired_bootstrap, run_metric_draws

    correct = {"s0": [1, 1, 0, 1, 0], "s1": [1, 0, 1, 1, 1], "c0": [0, 1, 0, 0, 0], "c1": [1, 0, 0, 1, 0]}
    counts = {k: np.array([[c, 1.0] for c in v]) for k, v in correct.items()}
    rng = np.random.default_rng(5)
    weights = example_weights(5, 200, rng)
    draws = {k: run_metric_draws(v, weights, ["correct", "n"], _accuracy, "accuracy") for k, v in counts.items()}
    got = paired_bootstrap([draws["s0"], draws["s1"]], [draws["c0"], draws["c1"]], (0.7, 0.3), rng)

    ref = np.random.default_rng(5)  # the same draws, by hand
    picks = ref.integers(0, 5, size=(200, 5))
    chosen = ref.integers(0, 2, size=(200, 2))
    diffs = []
    for b in range(200):
        acc = {k: sum(v[i] for i in picks[b]) / 5 for k, v in correct.items()}
        diffs.append(np.mean([acc[f"s{j}"] - acc[f"c{j}"] for j in chosen[b]]))
    assert got["ci95"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    assert got["diff"] == pytest.approx(0.4) and got["pairs"] == 2 and got["draws"] == 200


def test_bootstrap_of_always_right_vs_always_wrong_is_exactly_one():
    from kadapt.runs.compare_stats import example_weights, paired_bootstrap, run_metric_draws

    rng = np.random.default_rng(0)
    weights = example_weights(4, 30, rng)
    right = run_metric_draws(np.array([[1.0, 1.0]] * 4), weights, ["correct", "n"], _accuracy, "accuracy")
    wrong = run_metric_draws(np.array([[0.0, 1.0]] * 4), weights, ["correct", "n"], _accuracy, "accuracy")
    assert paired_bootstrap([right], [wrong], (1.0, 0.0), rng)["ci95"] == [1.0, 1.0]


def test_table_marks_intervals_above_and_below_zero():
    from kadapt.runs.compare_stats import render_table

    row = {"task": "t", "metric": "accuracy", "variant": "F", "twin": False, "test": {"mean": 0.5, "std": 0.01, "n": 3},
           "vs_bare": {"diff": 0.1, "ci95": [0.02, 0.2]}, "vs_twin": {"diff": -0.1, "ci95": [-0.2, -0.01]},
           "vs_lower_layers": {"diff": 0.0, "ci95": [-0.1, 0.1]}}
    assert render_table([row]).splitlines()[-1] == ("| t (accuracy) | F |  | 3 | 50.0 ± 1.0 | +10.0 [+2.0, +20.0] ✓ "
                                                     "| -10.0 [-20.0, -1.0] ✗ | +0.0 [-10.0, +10.0] |")


def _counts_reproduce_test_metrics(out: Path, rows: list[dict], abs_tol: float) -> None:
    from kadapt.core.objective import objective_class
    from kadapt.runs.compare import load_row

    head = objective_class("relation_classification")
    for row in rows:
        _, counts = load_row(out / "cells" / row["task"] / row["cell"])
        assert head.summarize(dict(zip(row["count_keys"], counts.sum(axis=0)))) == pytest.approx(row["test"], abs=abs_tol)


def test_per_example_counts_add_up_to_each_rows_test_metrics(finished):
    tmp, result = finished
    _counts_reproduce_test_metrics(tmp / "out", result.results["rows"], 1e-12)


def test_trainable_mode_runs_finetune_per_cell_without_the_lower_layers_control(world, backbone_dir, backbone, tmp_path):
    from kadapt.runs.recipe import FinetuneSection

    task = _task(world, backbone_dir, tmp_path)
    task.finetune, task.training.lr = FinetuneSection(backbone="full"), 1e-3
    result = compare([task], _sources(world, backbone_dir, tmp_path), head_seeds=[1], infusion_seeds=[3],
                     out=tmp_path / "out", draws=20, backbone=backbone, progress=False)
    rows = result.results["rows"]
    assert sorted(r["variant"] for r in rows) == ["F", "R(F)", "bare"]
    assert result.results["meta"]["skipped"] == ["facts: lower-layers control (needs frozen features; finetune mode "
                                                 "or head reads whole sequences)"]
    _counts_reproduce_test_metrics(tmp_path / "out", rows, 1e-6)  # the tuned model, reloaded, gives the run's metrics
    for row in rows:
        metrics = json.loads((tmp_path / "out" / "cells" / "facts" / row["cell"] / "run" / "metrics.json").read_text())
        assert metrics["finetune"]["backbone"] == "full" and metrics["test"] == row["test"]


def test_plan_stacks_plugins_on_the_lower_layers_when_asked():
    from kadapt.runs.compare import PluginInstance, plan_cells

    inst = {"F": [PluginInstance("F", 3, Path("f3"), Path("r3"))]}
    cells = plan_cells("t", inst, {"layers-0-1": (0, 1)}, {"F": "layers-0-1"}, [1], [3], stack_lower=True)
    got = [(c.variant, c.blocks, c.twin, c.lower) for c in cells]
    assert got == [("bare", ["last"], False, None),
                   ("lower layers 0,1", ["last", "layers-0-1"], False, "layers-0-1"),
                   ("F", ["last", "plugin-F-seed-3"], False, "layers-0-1"),
                   ("F+layers", ["last", "layers-0-1", "plugin-F-seed-3"], False, "layers-0-1"),
                   ("R(F)", ["last", "twin-F-seed-3"], True, "layers-0-1"),
                   ("R(F+layers)", ["last", "layers-0-1", "twin-F-seed-3"], True, "layers-0-1")]
    assert [c.id for c in cells][-1] == "R_F+layers-inf3-head1"


def test_summary_reads_each_runs_own_count_keys():
    """Heads whose counts name only the labels seen (SemEval) give runs different count keys."""
    from kadapt.runs.compare_stats import summarize_rows

    def row(variant, kind, keys, test):
        return {"task": "t", "variant": variant, "kind": kind, "twin": False, "infusion_seed": None, "head_seed": 1,
                "lower": None, "count_keys": keys, "test": {"accuracy": test}}

    rows = [row("bare", "bare", ["correct", "n"], 0.25), row("F", "plugin", ["extra", "n", "correct"], 0.75)]
    counts = [np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]),
              np.array([[5.0, 1.0, 1.0], [5.0, 1.0, 1.0], [5.0, 1.0, 1.0], [5.0, 1.0, 0.0]])]
    summary = summarize_rows(rows, counts, {"t": _accuracy}, {"t": "accuracy"}, draws=20)
    assert summary[1]["vs_bare"]["diff"] == pytest.approx(0.5)


def test_cli_moves_overrides_out_of_the_plugin_list(tmp_path):
    from kadapt.cli.compare_commands import split_plugins

    (tmp_path / "f.yaml").write_text("kind: infuse\n")
    (tmp_path / "folder").mkdir()
    got = split_plugins([f"F={tmp_path / 'f.yaml'}", str(tmp_path / "folder"), "training.epochs=1", "G=missing.yaml"])
    assert got == ([f"F={tmp_path / 'f.yaml'}", str(tmp_path / "folder")], ["training.epochs=1", "G=missing.yaml"])
