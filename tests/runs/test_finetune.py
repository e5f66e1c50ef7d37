"""Downstream fine-tuning over [backbone ; plug-ins]: feature sizes, frozen plug-ins, run outputs,
and re-evaluation of a saved run."""
from __future__ import annotations

import json

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError
from kadapt.core.fileio import load_tensors
from kadapt.runs.finetune import build_model, evaluate_run, finetune, load_finetuned
from kadapt.runs.infuse import infuse
from kadapt.core.objective import build_objective
from kadapt.runs.recipe import recipe_from_dict
from run_kit import (BACKBONE_KW, HIDDEN, factual_recipe, finetune_recipe, linguistic_recipe, tree_digest)


@pytest.fixture(scope="module")
def plugins(world, backbone_dir, backbone, tmp_path_factory):
    """Two infused plug-ins (one epoch each: only their format matters here)."""
    root = tmp_path_factory.mktemp("plugins")
    a = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, root / "f", epochs=1)), backbone=backbone)
    b = infuse(recipe_from_dict(linguistic_recipe(world, backbone_dir, root / "l", epochs=1)), backbone=backbone)
    return [a.plugin_dir, b.plugin_dir]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_finetune_with_n_plugins(n, world, backbone_dir, backbone, plugins, tmp_path):
    chosen = plugins[:n]
    before = {str(p): tree_digest(p) for p in chosen}
    out = tmp_path / "ft"
    result = finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, out, chosen)), backbone=backbone)

    assert {"metrics.json", "predictions.jsonl", "head.safetensors", "head_config.json", "recipe.yaml",
            "metrics.jsonl", "curves.png"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plugins"] == [str(p) for p in chosen]
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "micro_f1"}
    assert metrics["steps"] == result.metrics["steps"] > 0
    head, meta = load_tensors(out / "head.safetensors")
    assert meta == {"objective": "relation_classification"}
    assert head["classifier.weight"].shape[1] == 2 * HIDDEN * (1 + n)  # [subj ; obj] of H·(1+n) features
    config = json.loads((out / "head_config.json").read_text())
    assert config["plugins"] == [str(p) for p in chosen]
    assert config["backbone_fingerprint"]["weights_sha256"] == backbone.fingerprint.weights_sha256

    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    n_test = len(json.loads(world["task_facts_test"].read_text()))
    assert len(predictions) == n_test
    accuracy = sum(p["gold"] == p["prediction"] for p in predictions) / n_test
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])

    # the saved run alone reproduces the test metrics (backbone, plug-ins and head reloaded from disk)
    again = evaluate_run(out, world["task_facts_test"], batch_size=8)
    assert again["examples"] == n_test
    for key, value in metrics["test"].items():
        assert again[key] == pytest.approx(value, abs=1e-12), key
    assert (out / "eval" / "metrics.json").exists() and (out / "eval" / "predictions.jsonl").exists()
    assert {str(p): tree_digest(p) for p in chosen} == before, "fine-tuning must not touch plug-in files"


@pytest.mark.parametrize("n", [0, 1, 2])
def test_only_the_head_gets_gradients(n, backbone, plugins):
    model = build_model(backbone, plugins[:n])
    assert model.feature_size == HIDDEN * (1 + n)
    model.head = build_objective("relation_classification", model.feature_size, {"labels": ["a", "b", "c"]})
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") for name in trainable)
    enc = backbone.tokenizer(["@ Vorkel @ lives in # Tashimu # .", "@ a @ and # b # ."], padding=True,
                             return_tensors="pt")
    ids = enc["input_ids"]
    at, hash_ = backbone.tokenizer.convert_tokens_to_ids(["@", "#"])
    batch = {"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": torch.tensor([0, 2]),
             "subj_pos": (ids == at).int().argmax(1), "obj_pos": (ids == hash_).int().argmax(1)}
    feats = model.features(ids, enc["attention_mask"])
    assert feats.shape == (2, ids.shape[1], HIDDEN * (1 + n))
    model(batch).loss.backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == name.startswith("head."), name
    assert all(p.grad is None for p in backbone.model.parameters())


def test_load_finetuned_checks_the_backbone(world, backbone_dir, backbone, plugins, tiny_backbone_dir, tmp_path):
    out = tmp_path / "ft"
    finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, out, plugins[:1], epochs=1)), backbone=backbone)
    model = load_finetuned(out, backbone)
    assert not model.training and model.feature_size == 2 * HIDDEN
    other = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **BACKBONE_KW, seed=5))
    with pytest.raises(KadaptError, match="head_config.json"):
        load_finetuned(out, other)


def test_finetune_plugins_argument_replaces_the_recipe_list(world, backbone_dir, backbone, plugins, tmp_path):
    recipe = recipe_from_dict(finetune_recipe(world, backbone_dir, tmp_path / "ft", plugins, epochs=1))
    result = finetune(recipe, plugins=[str(plugins[1])], backbone=backbone)
    assert result.metrics["plugins"] == [str(plugins[1])]


def test_finetune_is_a_pure_function_of_the_recipe(world, backbone_dir, backbone, plugins, tmp_path):
    """Same recipe twice in one process, whatever ran in between: the same head, bit for bit."""
    heads = []
    for i in range(2):
        torch.manual_seed(1000 + i)  # unrelated work drew from the global RNG in between
        out = tmp_path / f"ft{i}"
        finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, out, plugins[:1], epochs=1)),
                 backbone=backbone)
        heads.append((out / "head.safetensors").read_bytes())
    assert heads[0] == heads[1]


def test_finetune_reads_the_hidden_state_cache(world, backbone_dir, backbone, plugins, tmp_path, monkeypatch):
    from kadapt.core.errors import RecipeError
    from run_kit import train_losses

    cache_opts = {"cache": True, "cache_dir": str(tmp_path / "cache"), "cache_dtype": "float32"}
    plain = finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, tmp_path / "plain", plugins)),
                     backbone=backbone)
    cached = finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, tmp_path / "cached", plugins, **cache_opts)),
                      backbone=backbone)
    # fp32 cache: the same run up to float rounding (the cache is built with other padding widths)
    assert train_losses(tmp_path / "cached") == pytest.approx(train_losses(tmp_path / "plain"), rel=1e-5, abs=1e-6)
    assert cached.metrics["dev"]["accuracy"] == plain.metrics["dev"]["accuracy"]
    assert cached.metrics["test"]["accuracy"] == plain.metrics["test"]["accuracy"]

    # once built, training and dev evaluation never run the backbone (test evaluation still does)
    calls = {"n": 0}
    original = backbone.encode

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(backbone, "encode", counting)
    again = finetune(recipe_from_dict(finetune_recipe(world, backbone_dir, tmp_path / "again", plugins, **cache_opts)),
                     backbone=backbone)
    n_test = len(json.loads(world["task_facts_test"].read_text()))
    assert calls["n"] == -(-n_test // 8)  # only the test batches (batch size 8) ran the backbone
    assert train_losses(tmp_path / "again") == train_losses(tmp_path / "cached")
    assert again.metrics["test"] == cached.metrics["test"]

    trained = finetune_recipe(world, backbone_dir, tmp_path / "full", plugins, **cache_opts)
    trained["finetune"] = {"backbone": "full"}
    with pytest.raises(RecipeError, match="training.cache needs finetune.backbone: frozen"):
        finetune(recipe_from_dict(trained), backbone=backbone)
