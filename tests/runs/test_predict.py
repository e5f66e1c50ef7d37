"""``kadapt predict``: batched predictions of a fine-tuned run, equal to the run's own test predictions,
with one backbone pass per batch for all plug-ins."""
from __future__ import annotations

import json

import pytest
from run_kit import factual_recipe, finetune_recipe, linguistic_recipe

from kadapt.cli.app import main
from kadapt.runs.finetune import finetune, load_finetuned
from kadapt.runs.infuse import infuse
from kadapt.runs.predict import predict_file
from kadapt.runs.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def finetuned(world, backbone_dir, backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    plugins = [infuse(recipe_from_dict(factual_recipe(world, backbone_dir, root / "f", epochs=1)), backbone=backbone),
               infuse(recipe_from_dict(linguistic_recipe(world, backbone_dir, root / "l", epochs=1)), backbone=backbone)]
    out = root / "ft"
    finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, out, [p.plugin_dir for p in plugins])),
             backbone=backbone)
    return out


def test_predict_cli_matches_the_runs_test_predictions(finetuned, world, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(finetuned), "--data", str(world["task_facts_test"]), "--out", str(out),
                 "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    assert "predictions written to" in printed and "examples/s" in printed
    ours = [json.loads(line) for line in out.read_text().splitlines()]
    theirs = [json.loads(line) for line in (finetuned / "predictions.jsonl").read_text().splitlines()]
    assert [p["prediction"] for p in ours] == [p["prediction"] for p in theirs]
    assert [p["source"] for p in ours] == [p["source"] for p in theirs]  # file order, although batched by length


def test_one_backbone_pass_per_batch_for_all_plugins(finetuned, world, backbone, tmp_path, monkeypatch):
    model = load_finetuned(finetuned, backbone)
    assert len(model.plugins) == 2
    calls = []
    encode = backbone.encode
    monkeypatch.setattr(backbone, "encode", lambda *a, **k: calls.append(k or a[2]) or encode(*a, **k))
    result = predict_file(finetuned, world["task_facts_test"], tmp_path / "p.jsonl", batch_size=4, model=model)
    assert len(calls) == -(-result.examples // 4)  # ceil: one pass per batch, not one per plug-in
    assert result.examples_per_second > 0


def test_predict_bad_input_is_one_clear_line(finetuned, tmp_path, capsys):
    assert main(["predict", str(finetuned), "--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "p")]) == 2
    assert "missing.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('[{"token": ["a"], "h": {"pos": [[0]]}}]')
    assert main(["predict", str(finetuned), "--data", str(bad), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kadapt: error:") and "bad.json" in err


def test_predict_on_unlabelled_and_unknown_label_data(finetuned, world, tmp_path, capsys):
    """Issue 19: gold labels are optional; unknown gold labels do not stop prediction."""
    rows = json.loads(open(world["task_facts_test"]).read())
    unlabelled = tmp_path / "new.json"
    unlabelled.write_text(json.dumps([{k: v for k, v in r.items() if k != "relation"} for r in rows]))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{**r, "relation": "never_seen"} for r in rows]))
    theirs = [json.loads(line)["prediction"] for line in (finetuned / "predictions.jsonl").read_text().splitlines()]
    for data, gold in ((unlabelled, None), (odd, "never_seen")):
        out = tmp_path / f"{data.stem}.jsonl"
        assert main(["predict", str(finetuned), "--data", str(data), "--out", str(out)]) == 0
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [p["prediction"] for p in lines] == theirs  # the gold label never changes a prediction
        assert {p["gold"] for p in lines} == {gold}
    labelled = tmp_path / "labelled.jsonl"
    assert main(["predict", str(finetuned), "--data", str(world["task_facts_test"]), "--out", str(labelled)]) == 0
    assert [json.loads(line)["gold"] for line in labelled.read_text().splitlines()] == [r["relation"] for r in rows]


def test_evaluate_and_predict_with_no_usable_records_exit_non_zero(finetuned, tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert main(["predict", str(finetuned), "--data", str(empty), "--out", str(tmp_path / "p.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kadapt: error: {empty}: no usable records") and err.count("\n") == 1
    assert main(["evaluate", str(finetuned), "--data", str(empty)]) == 2
    assert f"{empty}: no usable records" in capsys.readouterr().err
