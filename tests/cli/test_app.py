"""The ``kadapt`` command, called in-process through ``kadapt.cli.app.main`` (and once as a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kadapt.cli.app import main
from kadapt.testing.tiny import roberta_large_config
from run_kit import HIDDEN, factual_recipe, finetune_recipe, write_yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def infused(world, backbone_dir, tmp_path_factory):
    """``kadapt infuse RECIPE training.epochs=1`` into a zoo: (run folder, zoo folder, recipe path)."""
    root = tmp_path_factory.mktemp("cli")
    recipe = write_yaml(root / "factual.yaml", factual_recipe(world, backbone_dir, root / "run", zoo=root / "zoo",
                                                               epochs=3))
    code = main(["infuse", str(recipe), "training.epochs=1", "training.log_every=2"])
    assert code == 0
    return root / "run", root / "zoo", recipe


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_plugin_info_kind_on_roberta_large_config_only(tmp_path, capsys):
    roberta_large_config().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no weights, no tokenizer
    assert main(["plugin-info", "--kind", "kadapter", "--backbone", str(tmp_path), "--meta", "--json"]) == 0
    info = _json_out(capsys)
    assert info["parameters"] == 47251200
    assert info["required_layers"] == [0, 11, 23] and info["output_size"] == 1024 and info["meta"] is True
    # config overrides change the size
    assert main(["plugin-info", "--kind", "kadapter", "--backbone", str(tmp_path), "--meta", "--json",
                 "--set", "layers=[0, 23]"]) == 0
    assert _json_out(capsys)["parameters"] == 47251200 // 3 * 2
    assert main(["plugin-info", "--kind", "kadapter", "--backbone", str(tmp_path), "--meta"]) == 0
    assert "parameters: 47,251,200" in capsys.readouterr().out


def test_plugin_info_errors_are_one_line(tmp_path, capsys):
    assert main(["plugin-info", "--kind", "nope", "--backbone", str(tmp_path), "--meta"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err
    assert main(["plugin-info", "--kind", "kadapter", "--backbone", str(tmp_path / "missing"), "--meta"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["plugin-info"]) == 2
    assert "--plugin" in capsys.readouterr().err


def test_infuse_wrote_run_and_zoo(infused, capsys):
    run, zoo, _ = infused
    assert (run / "plugin" / "kadapt_config.json").exists() and (zoo / "factual" / "model.safetensors").exists()
    assert "epochs: 1" in (run / "recipe.yaml").read_text()  # the override is in the resolved recipe
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == [1, 2]  # 24 examples / batch 8 = 3 steps; logged at step 1 and every 2nd


def test_plugin_info_on_a_saved_plugin(infused, capsys):
    run, _, _ = infused
    assert main(["plugin-info", "--plugin", str(run / "plugin"), "--json"]) == 0
    info = _json_out(capsys)
    assert info["kind"] == "kadapter" and info["name"] == "factual" and info["parameters"] > 0
    assert info["files"]["model.safetensors"]["elements"] == info["parameters"]
    assert "objective_heads.safetensors" in info["files"]


def test_zoo_list_and_show(infused, capsys):
    _, zoo, _ = infused
    assert main(["zoo", "--zoo", str(zoo), "list", "--json"]) == 0
    listing = _json_out(capsys)
    assert [e["name"] for e in listing["entries"]] == ["factual"]
    assert list(listing["by_backbone"].values()) == [["factual"]]
    assert main(["zoo", "--zoo", str(zoo), "list"]) == 0
    assert "factual" in capsys.readouterr().out
    assert main(["zoo", "--zoo", str(zoo), "show", "factual"]) == 0
    assert _json_out(capsys)["name"] == "factual"
    assert main(["zoo", "--zoo", str(zoo), "show", "../etc"]) == 2
    assert "not allowed" in capsys.readouterr().err


def test_infuse_refuses_an_existing_zoo_name(infused, capsys):
    _, _, recipe = infused
    assert main(["infuse", str(recipe), "training.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and err.count("\n") == 1


def test_recipe_check(infused, tmp_path, capsys):
    _, _, recipe = infused
    assert main(["recipe", "check", str(recipe)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["recipe", "check", str(recipe), "data.train=/no/such/file.json"]) == 1
    assert "/no/such/file.json does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: infuse\nplugin: {kind: kadapter\n")
    assert main(["recipe", "check", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kadapt: error: {broken}:") and err.count("\n") == 1
    assert main(["recipe", "check", str(recipe), "training.bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_finetune_and_evaluate(infused, world, backbone_dir, tmp_path, capsys):
    run, _, _ = infused
    recipe = write_yaml(tmp_path / "ft.yaml", finetune_recipe(world, backbone_dir, tmp_path / "unused", epochs=1))
    out = tmp_path / "ft"
    assert main(["finetune", str(recipe), "--plugins", str(run / "plugin"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "metrics.json") in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plugins"] == [str(run / "plugin")]
    assert not (tmp_path / "unused").exists()  # --out wins over output.dir
    head_config = json.loads((out / "head_config.json").read_text())
    assert head_config["plugins"] == [str(run / "plugin")]

    eval_out = tmp_path / "eval"
    assert main(["evaluate", str(out), "--data", str(world["task_facts_test"]), "--out", str(eval_out)]) == 0
    result = _json_out(capsys)
    for key, value in metrics["test"].items():
        assert result[key] == pytest.approx(value), key
    assert (eval_out / "metrics.json").exists() and (eval_out / "predictions.jsonl").exists()

    # no plug-ins at all: the bare backbone
    assert main(["finetune", str(recipe), "--plugins", "--out", str(tmp_path / "bare")]) == 0
    assert json.loads((tmp_path / "bare" / "metrics.json").read_text())["plugins"] == []
    capsys.readouterr()
    from kadapt.core.fileio import load_tensors

    weight = load_tensors(tmp_path / "bare" / "head.safetensors")[0]["classifier.weight"]
    assert weight.shape[1] == 2 * HIDDEN


def test_subprocess_truncated_plugin_is_one_line_error(infused, tmp_path):
    import shutil

    run, _, _ = infused
    bad = tmp_path / "bad"
    shutil.copytree(run / "plugin", bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "kadapt.cli.app", "plugin-info", "--plugin", str(bad), "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(bad / "model.safetensors") in lines[0] and "Traceback" not in proc.stderr


def test_overrides_after_plugins_are_not_taken_as_plugin_paths(tmp_path):
    from kadapt.cli.app import _split_plugins_and_overrides

    real = tmp_path / "plug=in"  # an existing folder keeps its '=' and stays a plug-in
    real.mkdir()
    plugins, overrides = _split_plugins_and_overrides([str(real), "zoo/a", "training.epochs=1"], ["data.limit=5"])
    assert plugins == [str(real), "zoo/a"]
    assert overrides == ["data.limit=5", "training.epochs=1"]
    assert _split_plugins_and_overrides(None, ["x=1"]) == (None, ["x=1"])


def test_recipe_keys_prints_every_key_as_json(capsys):
    import json

    from kadapt.cli.app import main

    assert main(["recipe", "keys", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert "xlmk_knowledge" in keys["data"]["format"] and "trelm" in keys["plugin"]["kind"]
