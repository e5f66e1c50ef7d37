"""Knowledge infusion end to end: loss goes down, the plug-in format and run folder are written,
the backbone never changes, and continual infusion leaves earlier plug-ins bit-identical."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.core.errors import KadaptError
from kadapt.core.fileio import load_tensors
from kadapt.runs.infuse import infuse
from kadapt.runs.run_log import read_metrics
from kadapt.store.plugin_dir import load_plugin
from kadapt.runs.recipe import load_recipe, recipe_from_dict
from kadapt.store.zoo import Zoo
from run_kit import factual_recipe, linguistic_recipe, tree_digest


def _epoch_means(run_dir) -> list[float]:
    by_epoch: dict[int, list[float]] = {}
    for r in read_metrics(run_dir / "metrics.jsonl"):
        if r["split"] == "train":
            by_epoch.setdefault(r["epoch"], []).append(r["loss"])
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


def _check_plugin_dir(path, backbone, objective: str) -> None:
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md", "kadapt_config.json", "manifest.json", "model.safetensors", "objective_heads.safetensors"]
    record = json.loads((path / "kadapt_config.json").read_text())
    assert {"kind", "name", "format_version", "config", "backbone", "objectives", "created_by"} <= set(record)
    assert record["kind"] == "kadapter" and record["format_version"] == 2
    assert record["backbone"]["weights_sha256"] == backbone.fingerprint.weights_sha256
    assert [o["name"] for o in record["objectives"]] == [objective]
    assert record["objectives"][0]["dev_metrics"], "dev metrics are recorded with the objective"
    _, meta = load_tensors(path / "model.safetensors")
    # issue 19: the metadata also binds the weights to the config (hash + the bound values)
    assert {k: meta[k] for k in ("kind", "format_version")} == {"kind": "kadapter", "format_version": "2"}
    assert set(meta) == {"kind", "format_version", "config_sha256", "config_json"}
    assert json.loads(meta["config_json"])["config"] == record["config"]
    heads, _ = load_tensors(path / "objective_heads.safetensors")
    assert heads and all(k.startswith(objective + ".") for k in heads)
    card = (path / "README.md").read_text()
    assert "## How to load" in card and objective in card and "## Metrics" in card
    loaded = load_plugin(path, backbone)  # strict: fingerprint, keys, shapes
    assert loaded.plugin.num_parameters() == record["parameters"]
    fresh = FrozenBackbone.from_pretrained(backbone.name)  # as a new process would load it
    load_plugin(path, fresh)


@pytest.mark.parametrize("kind", ["relation", "dependency"])
def test_infusion_lowers_the_loss_and_writes_plugin_and_run_folder(kind, world, backbone_dir, backbone, tmp_path):
    out = tmp_path / "run"
    if kind == "relation":
        data = factual_recipe(world, backbone_dir, out, limit=16, epochs=6, adapter={"dropout": 0.0})
        objective = "relation_classification"
    else:
        data = linguistic_recipe(world, backbone_dir, out, epochs=6, lr=1e-2)
        objective = "dependency_head"
    result = infuse(recipe_from_dict(data, source="test"), backbone=backbone)

    means = _epoch_means(out)
    assert len(means) == 6
    assert means[-1] < 0.8 * means[0], f"training loss did not go down: {means}"
    assert result.train.final_dev and result.train.final_dev["split"] == "dev"

    _check_plugin_dir(result.plugin_dir, backbone, objective)
    assert result.plugin_dir == out / "plugin"
    assert {"recipe.yaml", "metrics.jsonl", "curves.png", "checkpoints", "plugin"} <= {p.name for p in out.iterdir()}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = read_metrics(out / "metrics.jsonl")
    assert {r["split"] for r in records} == {"train", "dev"}
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, result.train.global_step + 1))
    # recipe.yaml is the resolved recipe: every default filled in, and it loads back to the same run
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["training"]["epochs"] == 6 and "warmup_ratio" in saved["training"]
    assert load_recipe(out / "recipe.yaml").to_dict() == recipe_from_dict(data).to_dict()


def test_backbone_weights_and_files_unchanged_by_infusion(world, backbone_dir, tmp_path):
    files_before = tree_digest(backbone_dir)
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    before = hash_state_dict(backbone.model.state_dict())
    assert not any(p.requires_grad for p in backbone.model.parameters())
    infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "run", epochs=1)), backbone=backbone)
    assert hash_state_dict(backbone.model.state_dict()) == before
    assert all(p.grad is None for p in backbone.model.parameters())
    assert not backbone.model.training
    assert tree_digest(backbone_dir) == files_before


def _plugin_outputs(path, backbone):
    plugin = load_plugin(path, backbone).plugin
    enc = backbone.tokenizer(["Records mention Vorkel together with Tashimu .", "The notes list A next to B ."],
                             padding=True, return_tensors="pt")
    states = backbone.encode(enc["input_ids"], enc["attention_mask"], plugin.required_layers())
    with torch.no_grad():
        return plugin.adapt(states, enc["attention_mask"])


def test_continual_infusion_leaves_earlier_plugins_bit_identical(world, backbone_dir, backbone, tmp_path):
    zoo = tmp_path / "zoo"
    a = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "a", name="factual", zoo=zoo,
                                               epochs=1)), backbone=backbone)
    assert a.zoo_entry == (zoo / "factual").resolve()
    files_a = tree_digest(zoo / "factual")
    run_files_a = tree_digest(a.plugin_dir)
    out_a = _plugin_outputs(zoo / "factual", backbone)

    b = infuse(recipe_from_dict(linguistic_recipe(world, backbone_dir, tmp_path / "b", name="linguistic", zoo=zoo,
                                                  epochs=1)), backbone=backbone)
    assert b.zoo_entry == (zoo / "linguistic").resolve()
    assert tree_digest(zoo / "factual") == files_a
    assert tree_digest(a.plugin_dir) == run_files_a
    assert torch.equal(_plugin_outputs(zoo / "factual", backbone), out_a)
    assert [e["name"] for e in Zoo(zoo).entries()] == ["factual", "linguistic"]
    assert Zoo(zoo).by_backbone() == {backbone.fingerprint.weights_sha256: ["factual", "linguistic"]}

    # same name again: refused before any training happens, and nothing in the zoo changes
    again = tmp_path / "again"
    with pytest.raises(KadaptError, match="already exists"):
        infuse(recipe_from_dict(factual_recipe(world, backbone_dir, again, name="factual", zoo=zoo)),
               backbone=backbone)
    assert not (again / "checkpoints").exists()
    assert tree_digest(zoo / "factual") == files_a
    with pytest.raises(KadaptError, match="not allowed"):
        infuse(recipe_from_dict(factual_recipe(world, backbone_dir, again, name="../escape", zoo=zoo)),
               backbone=backbone)
    assert not (tmp_path / "escape").exists()


def test_tokenizer_fingerprint_ignores_runtime_truncation_and_padding(backbone_dir):
    from kadapt.core.backbone import hash_tokenizer

    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    clean = hash_tokenizer(backbone.tokenizer)
    backbone.tokenizer(["a b c", "d"], padding=True, truncation=True, max_length=8)
    assert hash_tokenizer(backbone.tokenizer) == clean
