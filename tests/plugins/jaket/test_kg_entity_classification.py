"""KG-only entity classification through `kadapt finetune` / `kadapt evaluate` (JAKET plug-in, tiny KG)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError, KadaptError
from kadapt.runs.finetune import evaluate_run, finetune
from kadapt.kg import read_kg
from kadapt.core.objective import build_objective
from kadapt.store.plugin_dir import save_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.jaket.entity_classifier import split_entities
from kadapt.plugins.jaket.pretraining import build_memory
from kadapt.runs.recipe import recipe_from_dict

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"


@pytest.fixture(scope="module")
def jaket_dir(tiny_backbone_dir, tmp_path_factory):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert"))
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"fanouts": [3, 3]}, backbone.spec)
    out = tmp_path_factory.mktemp("jaket-plugin")
    save_plugin(plugin, out, backbone.fingerprint, memory=build_memory(backbone, read_kg(TINY_KG), plugin).to_tensors())
    return out


def _recipe(backbone_dir, plugin_dir, out, **config):
    return recipe_from_dict({
        "kind": "finetune", "name": "kg-ec-tiny", "backbone": {"name_or_path": str(backbone_dir)},
        "plugins": [str(plugin_dir)],
        "objective": {"name": "kg_entity_classification",
                      "config": {"kg": str(TINY_KG), "memory": str(plugin_dir / "memory.safetensors"),
                                 "fractions": [0.4, 0.2, 0.4], **config}},
        "data": {"format": "kg_entities", "train": str(TINY_KG), "dev": str(TINY_KG), "test": str(TINY_KG),
                 "max_length": 16},
        "finetune": {"plugins": "trainable"},
        "training": {"epochs": 40, "batch_size": 8, "lr": 0.02, "log_every": 1, "seed": 3},
        "output": {"dir": str(out)},
    })


def test_split_is_the_benchmark_split_and_train_fraction_cuts_train():
    records = read_records("kg_entities", TINY_KG)
    assert len(records) == 12 and records[0].id == "e01" and records[0].label == "location"
    labels = sorted({r.label for r in records})
    head = build_objective("kg_entity_classification", 8, {"labels": labels, "kg": str(TINY_KG), "split_seed": 5})
    parts = {s: head.prepare_records(records, s, 0) for s in ("train", "dev", "test")}
    want = split_entities(torch.tensor([labels.index(r.label) for r in records]), seed=5)
    for split, part in parts.items():
        assert [r.index for r in part] == sorted(getattr(want, split).tolist())
    assert [len(p) for p in parts.values()] == [2, 2, 8]
    head.train_fraction = 0.5
    assert len(head.prepare_records(records, "train", 0)) == 1
    assert head.prepare_records(records, "test", 0) == parts["test"]


def test_finetune_and_evaluate_write_metrics_and_predictions(tiny_backbone_dir, jaket_dir, tmp_path):
    backbone_dir = tiny_backbone_dir("bert")
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    before = hash_state_dict(backbone.model.state_dict())
    result = finetune(_recipe(backbone_dir, jaket_dir, tmp_path / "run"), backbone=backbone)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["trainable_parameters"]["plugins"] > 0 and metrics["trainable_parameters"]["backbone"] == 0
    losses = [json.loads(x)["loss"] for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["split"] == "train"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    predictions = [json.loads(x) for x in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6 and {"id", "gold", "prediction"} <= set(predictions[0])
    assert metrics["test"]["accuracy"] == sum(p["gold"] == p["prediction"] for p in predictions) / 6
    assert hash_state_dict(backbone.model.state_dict()) == before
    evaluated = evaluate_run(result.run_dir, TINY_KG)
    assert evaluated["examples"] == 6 and evaluated["accuracy"] == metrics["test"]["accuracy"]


def test_bad_inputs(tiny_backbone_dir, jaket_dir, tmp_path):
    backbone_dir = tiny_backbone_dir("bert")
    bare = tmp_path / "kg_nocat"
    bare.mkdir()
    for name in ("train.tsv", "entity2text.txt", "relation2text.txt"):
        (bare / name).write_text((TINY_KG / name).read_text())
    with pytest.raises(DataError, match="no entity has a category"):
        read_records("kg_entities", bare)
    recipe = _recipe(backbone_dir, jaket_dir, tmp_path / "r1")
    recipe.plugins = []
    with pytest.raises(KadaptError, match="exactly one JAKET plug-in; the model has 0"):
        finetune(recipe)
    with pytest.raises(KadaptError, match="train_fraction"):
        finetune(_recipe(backbone_dir, jaket_dir, tmp_path / "r2", train_fraction=0.0))
