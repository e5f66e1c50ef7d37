"""Recipe schema: strict keys and types, overrides, path expansion, checks, and the shipped recipes."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kadapt.core.errors import RecipeError
from kadapt.core.family import registered_kinds
from kadapt.runs.recipe import (
    apply_overrides,
    check_recipe,
    load_recipe,
    recipe_from_dict,
    resolve_path,
)
from kadapt.runs.loop import TrainConfig

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "recipes").rglob("*.yaml"))


def _valid(tmp_path) -> dict:
    train = tmp_path / "train.json"
    train.write_text("[]")
    backbone = tmp_path / "backbone"
    backbone.mkdir(exist_ok=True)
    return {
        "kind": "infuse", "name": "factual",
        "backbone": {"name_or_path": str(backbone)},
        "plugin": {"kind": "kadapter", "config": {"adapter_size": 32}},
        "objective": {"name": "relation_classification", "config": {"dropout": 0.2}},
        "data": {"format": "trex_rc", "train": str(train), "max_length": 64},
        "training": {"epochs": 3, "batch_size": 16, "lr": 1e-4},
        "output": {"dir": str(tmp_path / "run")},
    }


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def test_valid_recipe_round_trips(tmp_path):
    recipe = recipe_from_dict(_valid(tmp_path), source="r.yaml")
    assert isinstance(recipe.training, TrainConfig) and recipe.training.epochs == 3
    assert recipe.training.seed == TrainConfig().seed  # defaults filled in
    assert recipe.plugin.config == {"adapter_size": 32}
    assert recipe.source == "r.yaml" and "source" not in recipe.to_dict()
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again.to_dict() == recipe.to_dict()
    assert check_recipe(recipe) == []


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(epochs=3), "unknown top-level key(s) ['epochs']"),
    (lambda d: d["training"].update(epoch=3), "epoch"),
    (lambda d: d["data"].update(formt="x"), "formt"),
    (lambda d: d["backbone"].update(revision="main"), "revision"),
    (lambda d: d["output"].update(zoo_dir="z"), "zoo_dir"),
    (lambda d: d["plugin"].update(kinds="kadapter"), "kinds"),
    (lambda d: d["objective"].update(labels=["a"]), "labels"),
    (lambda d: d["training"].update(epochs="three"), "epochs"),
    (lambda d: d["training"].update(lr="fast"), "lr"),
    (lambda d: d["training"].update(cpu="yes"), "cpu"),
    (lambda d: d["data"].update(max_length=1.5), "max_length"),
    (lambda d: d.update(training=[1, 2]), "training: expected a mapping"),
    (lambda d: d["plugin"].update(config=[1]), "plugin.config: expected a mapping"),
    (lambda d: d["data"].update(on_error="ignore"), "on_error must be 'raise' or 'skip'"),
    (lambda d: d.update(kind="train"), "key 'kind' must be one of"),
    (lambda d: d.pop("plugin"), "needs a 'plugin' section"),
    (lambda d: d.update(plugins="adapters_zoo/x"), "'plugins' must be a list"),
])
def test_invalid_recipes_are_errors_naming_the_source(tmp_path, mutate, message):
    data = _valid(tmp_path)
    mutate(data)
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(data, source="bad.yaml")
    assert message in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_int_is_accepted_for_float_fields(tmp_path):
    data = _valid(tmp_path)
    data["training"]["lr"] = 1
    assert recipe_from_dict(data).training.lr == 1.0


def test_not_a_mapping(tmp_path):
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(_write(tmp_path / "list.yaml", "- a\n- b\n"))


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path / "broken.yaml", "kind: infuse\nname: x\ntraining: {epochs: 1\nplugin: {}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert text.startswith(f"{path}:") and "invalid YAML" in text
    line = int(text[len(str(path)) + 1:].split(":")[0])
    assert 3 <= line <= 4  # the unclosed mapping opened on line 3


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(tmp_path / "latin1.yaml")


def test_overrides(tmp_path):
    path = _write(tmp_path / "r.yaml", _valid(tmp_path))
    recipe = load_recipe(path, ["training.epochs=1", "training.lr=0.5", "data.on_error=skip",
                                "plugin.config.layers=[0, 1]", "output.zoo=my_zoo", "name=other"])
    assert recipe.training.epochs == 1 and recipe.training.lr == 0.5
    assert recipe.data.on_error == "skip" and recipe.output.zoo == "my_zoo" and recipe.name == "other"
    assert recipe.plugin.config == {"adapter_size": 32, "layers": [0, 1]}
    with pytest.raises(RecipeError, match="epochs"):
        load_recipe(path, ["training.epochs=many"])
    with pytest.raises(RecipeError, match="unknown"):
        load_recipe(path, ["training.epochz=1"])
    with pytest.raises(RecipeError, match="expected key.sub=value"):
        load_recipe(path, ["training.epochs"])
    with pytest.raises(RecipeError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"], "r.yaml")


def test_data_dir_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("KADAPT_DATA_DIR", str(tmp_path / "data"))
    assert resolve_path("${KADAPT_DATA_DIR}/fewrel/val_wiki.json") == tmp_path / "data" / "fewrel" / "val_wiki.json"
    assert resolve_path(None) is None
    assert resolve_path("~/x") == Path.home() / "x"
    assert resolve_path("relative/p") == Path("relative/p")
    monkeypatch.delenv("KADAPT_DATA_DIR")
    assert "${KADAPT_DATA_DIR}" not in str(resolve_path("${KADAPT_DATA_DIR}/x"))  # default: ../shared/data


def test_check_recipe_reports_problems(tmp_path, monkeypatch):
    monkeypatch.setenv("KADAPT_DATA_DIR", str(tmp_path / "data"))
    data = _valid(tmp_path)
    data["data"].update(train="${KADAPT_DATA_DIR}/missing.json", dev=str(tmp_path / "dev.json"), format="nope")
    data["plugin"]["kind"] = "nope"
    data["objective"]["name"] = "nope"
    data["backbone"]["name_or_path"] = "./no/such/backbone"
    problems = check_recipe(recipe_from_dict(data, source="r.yaml"))
    text = "\n".join(problems)
    assert all(p.startswith("r.yaml: ") for p in problems)
    assert f"data.train: {tmp_path / 'data' / 'missing.json'} does not exist" in text
    assert "data.dev:" in text and "plugin.kind 'nope'" in text and "objective.name 'nope'" in text
    assert "data.format 'nope'" in text and "backbone.name_or_path" in text
    ft = recipe_from_dict({"kind": "finetune", "plugins": [str(tmp_path / "no-plugin")],
                           "data": {"train": str(tmp_path / "train.json")},
                           "backbone": {"name_or_path": "roberta-large"}})
    assert check_recipe(ft) == [f"<recipe>: plugins: {tmp_path / 'no-plugin'} has no kadapt_config.json"]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.relative_to(REPO / "recipes").as_posix() for p in SHIPPED])
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.kind == path.parent.name and recipe.source == str(path)
    assert recipe.kind == "finetune" or recipe.plugin.kind in registered_kinds()
    recipe = load_recipe(path, ["training.epochs=1"])
    assert recipe.training.epochs == 1


def test_there_are_shipped_recipes():
    assert {p.parent.name for p in SHIPPED} == {"infuse", "finetune"}


FINETUNE = sorted((REPO / "recipes" / "finetune").glob("*.yaml"))
INFUSE = sorted((REPO / "recipes" / "infuse").glob("*.yaml"))


@pytest.mark.parametrize("path", FINETUNE + INFUSE, ids=[f"{p.parent.name}/{p.name}" for p in FINETUNE + INFUSE])
def test_every_shipped_recipe_passes_recipe_check(path, capsys):
    """`kadapt recipe check` exits 0: data sets that are not installed here are notes, not errors."""
    from kadapt.cli.app import main

    assert main(["recipe", "check", str(path)]) == 0
    err = capsys.readouterr().err
    assert all(line.startswith("note: ") and ("is not present (data set not installed)" in line
                                              or "is not present (plug-in not infused yet)" in line)
               for line in err.splitlines())


def test_missing_data_is_a_note_unless_required(tmp_path, monkeypatch, capsys):
    from kadapt.cli.app import main

    monkeypatch.setenv("KADAPT_DATA_DIR", str(tmp_path / "data"))
    data = _valid(tmp_path)
    data["data"]["train"] = "${KADAPT_DATA_DIR}/absent/train.json"
    path = _write(tmp_path / "r.yaml", data)
    assert main(["recipe", "check", str(path)]) == 0
    assert f"note: {path}: data.train: {tmp_path / 'data' / 'absent' / 'train.json'} is not present" in (
        capsys.readouterr().err)
    assert main(["recipe", "check", str(path), "--require-data"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["recipe", "check", str(path), f"data.train={tmp_path / 'nowhere.json'}"]) == 1  # explicit path


def test_every_task_head_has_a_shipped_recipe():
    from kadapt.core.objective import registered_objectives
    from kadapt.core.objective import objective_class

    tasks = {n for n in registered_objectives() if objective_class(n).__module__.startswith("kadapt.tasks.")}
    used = {load_recipe(p).objective.name for p in FINETUNE}
    assert tasks and tasks <= used, f"task heads without a recipe: {sorted(tasks - used)}"


def test_recipe_keys_list_every_registered_format_kind_and_objective():
    from kadapt.core.family import format_names, registered_kinds
    from kadapt.core.objective import registered_objectives
    from kadapt.runs.recipe import recipe_help

    keys = recipe_help()
    listed = keys["data"]["format"].split("Registered: ")[1].rstrip(".").split(", ")
    assert listed == format_names() and len(listed) == 23 and "raw_text_spacy" in listed
    assert {"xlmk_knowledge", "metaqa", "kg_entities"} <= set(listed)  # families' formats too
    assert keys["plugin"]["kind"].endswith(f"Registered: {', '.join(registered_kinds())}.")
    assert keys["objective"]["name"].endswith(f"Registered: {', '.join(registered_objectives())}.")
    assert set(keys) == {"backbone", "plugin", "objective", "data", "training", "finetune", "output"}
    assert keys["training"]["lr"] == "Peak learning rate of AdamW."
