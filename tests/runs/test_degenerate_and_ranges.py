"""Issue 19: training on nothing is an error, data.limit is a stratified subset, bad recipe values are
refused up front (one line per value, naming the file and the key), overwriting a run needs asking."""
from __future__ import annotations

import pytest

from kadapt.cli.app import main
from kadapt.core.errors import DataError, KadaptError
from kadapt.data.formats import read_records, stratified_subset
from kadapt.data.records import RelationExample
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import RecipeValueError, check_recipe, load_recipe, recipe_from_dict
from run_kit import factual_recipe, write_yaml


def _rel(label, i):
    return RelationExample(text=f"a b {i}", subj_span=(0, 1), obj_span=(2, 3), label=label, source=f"f:{i}")


def test_limit_is_a_seeded_label_stratified_subset_in_file_order():
    records = [_rel(f"P{k}", 10 * k + i) for k in range(10) for i in range(10)]  # sorted by label, like LAMA
    subset = stratified_subset(records, 20, seed=0)
    assert len(subset) == 20
    assert sorted({r.label for r in subset}) == sorted({f"P{k}" for k in range(10)})
    assert all(sum(r.label == f"P{k}" for r in subset) == 2 for k in range(10))  # proportional: 2 of each
    order = [records.index(r) for r in subset]
    assert order == sorted(order)  # file order kept
    assert stratified_subset(records, 20, seed=0) == subset  # seeded
    assert stratified_subset(records, 20, seed=1) != subset
    skewed = [_rel("A", i) for i in range(90)] + [_rel("B", 90 + i) for i in range(10)]
    picked = stratified_subset(skewed, 10, seed=0)
    assert sum(r.label == "A" for r in picked) == 9 and sum(r.label == "B" for r in picked) == 1


def test_limit_on_a_real_file_keeps_several_labels(world):
    everything = read_records("trex_rc", world["infuse_factual_train"])
    prefix_labels = {r.label for r in everything[:6]}
    subset = read_records("trex_rc", world["infuse_factual_train"], limit=6, seed=3)
    assert len(subset) == 6 and len({r.label for r in subset}) >= min(6, len({r.label for r in everything}))
    assert len({r.label for r in subset}) >= len(prefix_labels)


def test_single_label_training_split_is_an_error_unless_asked(world, backbone_dir, tmp_path):
    import json

    rows = json.loads(open(world["infuse_factual_train"]).read())
    one = [r for r in rows if r["relation"] == rows[0]["relation"]][:8]
    path = tmp_path / "one.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in one) + "\n]\n")
    raw = factual_recipe(world, backbone_dir, tmp_path / "run", limit=None, epochs=1)
    raw["data"] = {**raw["data"], "train": str(path), "dev": None}
    with pytest.raises(DataError) as err:
        infuse(recipe_from_dict(raw))
    message = str(err.value)
    assert message.startswith(f"{path}: the training split has 1 label(s) ['{one[0]['relation']}']")
    assert "training.allow_degenerate: true" in message and "\n" not in message
    assert not (tmp_path / "run" / "plugin").exists()
    raw["training"]["allow_degenerate"] = True
    assert infuse(recipe_from_dict(raw)).plugin_dir.is_dir()  # the refused run left nothing that needs --overwrite


@pytest.mark.parametrize("section, key, value, message", [
    ("training", "batch_size", 0, "key 'training.batch_size' is 0; must be >= 1"),
    ("training", "lr", -0.001, "key 'training.lr' is -0.001; must be > 0"),
    ("training", "epochs", -1, "key 'training.epochs' is -1; must be >= 0"),
    ("training", "epochs", 0, "key 'training.epochs' is 0: zero optimizer steps"),
    ("data", "max_length", 0, "key 'data.max_length' is 0; must be >= 2"),
    ("data", "max_length", 1, "key 'data.max_length' is 1; must be >= 2"),
    ("training", "warmup_ratio", 1.5, "key 'training.warmup_ratio' is 1.5; must be < 1"),
    ("training", "lr", float("nan"), "key 'training.lr' is nan; must be a finite number"),
])
def test_bad_values_are_refused_naming_file_and_key(world, backbone_dir, tmp_path, section, key, value, message):
    raw = factual_recipe(world, backbone_dir, tmp_path / "run")
    raw[section][key] = value
    with pytest.raises(RecipeValueError) as err:
        recipe_from_dict(raw, "r.yaml")
    assert str(err.value) == f"r.yaml: {message}" or str(err.value).startswith(f"r.yaml: {message}")


def test_several_bad_values_one_line_each_and_recipe_check_exits_1(world, backbone_dir, tmp_path, capsys):
    raw = factual_recipe(world, backbone_dir, tmp_path / "run")
    raw["training"].update(batch_size=0, lr=-1.0)
    path = write_yaml(tmp_path / "r.yaml", raw)
    assert main(["recipe", "check", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"{path}: key 'training.batch_size' is 0; must be >= 1",
                     f"{path}: key 'training.lr' is -1.0; must be > 0"]


def test_yaml_1e_minus_5_is_a_number(world, backbone_dir, tmp_path):
    raw = factual_recipe(world, backbone_dir, tmp_path / "run")
    path = write_yaml(tmp_path / "r.yaml", raw)
    path.write_text(path.read_text().replace("lr: 0.003", "lr: 1e-5"))
    assert "lr: 1e-5" in path.read_text()
    assert load_recipe(path).training.lr == 1e-05
    assert load_recipe(path, ["training.lr=3E-4"]).training.lr == 3e-4
    assert load_recipe(path, ["name=1e5x"]).name == "1e5x"  # not every e-word is a number


def test_max_length_above_the_backbones_positions(world, backbone_dir, tmp_path):
    import json

    limit = json.loads((backbone_dir / "config.json").read_text())["max_position_embeddings"]
    raw = factual_recipe(world, backbone_dir, tmp_path / "run")
    raw["data"]["max_length"] = limit + 1
    recipe = recipe_from_dict(raw, "r.yaml")
    problems = check_recipe(recipe)
    assert f"r.yaml: key 'data.max_length' is {limit + 1}; the backbone {backbone_dir} takes at most {limit} tokens" \
        in " ".join(problems)
    with pytest.raises(KadaptError, match=r"r.yaml: key 'data.max_length' is"):
        infuse(recipe)


def test_cli_infuse_refuses_an_existing_run_without_overwrite(world, backbone_dir, tmp_path, capsys):
    path = write_yaml(tmp_path / "r.yaml", factual_recipe(world, backbone_dir, tmp_path / "run", epochs=1))
    assert main(["infuse", str(path)]) == 0
    before = (tmp_path / "run" / "plugin" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["infuse", str(path), "training.seed=8"]) == 2
    err = capsys.readouterr().err
    assert err == (f"kadapt: error: {tmp_path / 'run'}: already holds a run; pass --resume to continue it or "
                   "--overwrite to replace it (Python: resume=True / overwrite=True)\n")
    assert (tmp_path / "run" / "plugin" / "model.safetensors").read_bytes() == before
    assert main(["infuse", str(path), "training.seed=8", "--overwrite"]) == 0
    assert (tmp_path / "run" / "plugin" / "model.safetensors").read_bytes() != before
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/b", ".hidden"])
def test_joint_run_names_cannot_leave_out(world, backbone_dir, tmp_path, name):
    from kadapt.runs.joint import infuse_many

    with pytest.raises(KadaptError, match=r"key 'name' .* is not allowed: use 1-128 letters"):
        # refused when the recipe is read (recipe check); infuse_many checks again for recipes built otherwise
        recipes = [recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "unused", name=n), f"{n}.yaml")
                   for n in ("first", name)]
        infuse_many(recipes, out=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_too_long_out_is_one_line(world, backbone_dir, tmp_path, capsys):
    path = write_yaml(tmp_path / "r.yaml", factual_recipe(world, backbone_dir, tmp_path / "run", epochs=1))
    assert main(["infuse", str(path), "--out", str(tmp_path / ("x" * 300))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kadapt: error: run folder ") and "too long for the file system" in err
    assert err.count("\n") == 1


def test_out_of_range_layer_names_the_recipe(world, backbone_dir, tmp_path):
    raw = factual_recipe(world, backbone_dir, tmp_path / "run", adapter={"layers": [0, 99]})
    with pytest.raises(KadaptError) as err:
        infuse(recipe_from_dict(raw, "r.yaml"))
    assert str(err.value).startswith("r.yaml: plugin.config: K-Adapter layers [0, 99] must be strictly increasing")


def test_resume_says_what_it_did(world, backbone_dir, tmp_path, caplog):
    import logging

    raw = factual_recipe(world, backbone_dir, tmp_path / "run", epochs=1)
    with caplog.at_level(logging.WARNING, logger="kadapt"):
        infuse(recipe_from_dict(raw), resume=True)
    assert f"--resume: no complete checkpoint in {tmp_path / 'run' / 'checkpoints'}, starting fresh" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kadapt"):
        infuse(recipe_from_dict(raw), resume=True)
    assert "--resume: resumed from" in caplog.text and "step-0000003" in caplog.text


@pytest.mark.parametrize("name", ["../../x", "/abs", ".hidden", "a/b", ""])
def test_a_name_that_would_leave_its_folder_is_refused_at_recipe_check(world, backbone_dir, tmp_path, name):
    raw = factual_recipe(world, backbone_dir, tmp_path / "run")
    raw["name"] = name
    with pytest.raises(RecipeValueError) as err:
        recipe_from_dict(raw, "r.yaml")
    assert str(err.value) == (f"r.yaml: key 'name' {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or "
                              "'-' (no path separators, not starting with '.')")
