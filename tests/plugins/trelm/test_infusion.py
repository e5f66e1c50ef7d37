"""TRELM end to end through the CLI on a tiny backbone: ``kadapt infuse`` (dynamic routing, memory
bank, CKA + MLM), the plug-in format on disk, frozen backbone files, loading into ``kadapt finetune``;
and the shipped recipes parse."""
from __future__ import annotations

import json
from pathlib import Path

from run_kit import finetune_recipe, train_losses, training, tree_digest, write_yaml

from kadapt.cli.app import main
from kadapt.store.plugin_dir import describe_plugin
from kadapt.runs.recipe import load_recipe

REPO = Path(__file__).resolve().parents[3]


def test_infuse_then_finetune(world, backbone_dir, tmp_path, caplog):
    backbone_files = tree_digest(backbone_dir)
    recipe = {
        "kind": "infuse", "name": "trelm-tiny",
        "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "trelm", "config": {"neurons_per_layer": [8], "ig_steps": 4, "routing": "periodic",
                                               "reselect_every": 3, "routing_warmup_steps": 0,
                                               "attribution_rows": 4, "memory_slots": 64, "memory_window": 4}},
        "objective": {"name": "trelm_knowledge", "config": {"num_negatives": 5}},
        "data": {"format": "trex_rc", "train": str(world["infuse_factual_train"]),
                 "dev": str(world["infuse_factual_dev"]), "max_length": 48, "limit": 32},
        "training": training(epochs=2, lr=1e-2),
        "output": {"dir": str(tmp_path / "run")},
    }
    caplog.set_level("INFO", logger="kadapt.plugins.trelm.plugin")
    assert main(["infuse", str(write_yaml(tmp_path / "trelm.yaml", recipe))]) == 0
    plugin_dir = tmp_path / "run" / "plugin"
    assert {p.name for p in plugin_dir.iterdir()} == {"kadapt_config.json", "manifest.json", "model.safetensors", "README.md",
                                                      "objective_heads.safetensors", "memory.safetensors"}
    info = describe_plugin(plugin_dir)
    assert info["kind"] == "trelm" and info["parameters"] == 2 * 8 * (2 * 32 + 1) + 2 * 8 + 1  # + indices, counter
    assert "knowledge path selected" in (plugin_dir / "README.md").read_text()
    selections = [r.message for r in caplog.records if "knowledge path #" in r.message]
    assert len(selections) >= 3 and "at step 0" in selections[0]  # 8 steps: selected at 0, 3, 6
    from safetensors.torch import load_file

    ages = load_file(str(plugin_dir / "memory.safetensors"))
    # the fresh-Adam hooks ran on the loop's (accelerate-wrapped) optimizer: a neuron's age is the number of
    # optimizer steps since it was selected at step 0, 3 or 6 of the 8; which earlier neurons survive step 6's
    # selection varies with the run's context (alone {2, 5}, in the whole suite {2, 8} with long-tail words
    # on), the new ones of step 6 (age 2) are always there
    seen = set(ages["neuron_age.0"].tolist()) | set(ages["neuron_age.1"].tolist())
    assert seen <= {2, 5, 8} and 2 in seen
    assert ages["word_counts"].sum() > 0  # long-tail words were counted (inject_long_tail, the default)
    losses = train_losses(tmp_path / "run")
    assert losses[-1] < losses[0]
    assert tree_digest(backbone_dir) == backbone_files  # the backbone's files are never written

    ft = write_yaml(tmp_path / "ft.yaml", finetune_recipe(world, backbone_dir, tmp_path / "ft", epochs=1))
    assert main(["finetune", str(ft), "--plugins", str(plugin_dir)]) == 0
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["plugins"] == [str(plugin_dir)] and "accuracy" in metrics["test"]


def test_shipped_recipes_parse():
    full = load_recipe(REPO / "recipes" / "infuse" / "trelm.yaml")
    assert full.plugin.kind == "trelm" and full.plugin.config["ig_steps"] == 20
    assert full.plugin.config["memory_window"] == 16 and full.plugin.config["memory_beta"] == 2.0
    assert full.objective.config["theta"] == 0.5
    small = load_recipe(REPO / "recipes" / "infuse" / "trelm_small.yaml")
    assert small.training.cpu and small.data.format == "lama_trex"


def test_infuse_with_kg_injection(world, backbone_dir, tmp_path):
    """``kadapt infuse`` with inject_kg through the one loop: a KG folder holding half the subjects and
    every relation of the training sentences; the model card counts the mentions without a KG row."""
    from kadapt.data.relations import read_trex_rc

    records = list(read_trex_rc(world["infuse_factual_train"]))[:32]
    subjects = sorted({r.text[r.subj_span[0]:r.subj_span[1]] for r in records})
    kg = tmp_path / "kg"
    kg.mkdir()
    kept = subjects[: len(subjects) // 2]
    (kg / "entity2text.txt").write_text("".join(f"e{i}\t{name}, an entity\n" for i, name in enumerate(kept)))
    relations = sorted({r.label for r in records})
    (kg / "relation2text.txt").write_text("".join(f"{label}\t{label}\n" for label in relations))
    (kg / "train.tsv").write_text(f"e0\t{relations[0]}\te0\n")
    recipe = {
        "kind": "infuse", "name": "trelm-kg",
        "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "trelm", "config": {"neurons_per_layer": [8], "ig_steps": 2, "routing": "per_batch",
                                               "attribution": "grad_x_act", "routing_warmup_steps": 2,
                                               "attribution_rows": 4, "memory_slots": 64, "inject_kg": str(kg)}},
        "objective": {"name": "trelm_knowledge", "config": {"num_negatives": 5}},
        "data": {"format": "trex_rc", "train": str(world["infuse_factual_train"]),
                 "dev": str(world["infuse_factual_dev"]), "max_length": 48, "limit": 32},
        "training": training(epochs=1, lr=1e-2),
        "output": {"dir": str(tmp_path / "run")},
    }
    assert main(["infuse", str(write_yaml(tmp_path / "trelm.yaml", recipe))]) == 0
    card = (tmp_path / "run" / "plugin" / "README.md").read_text()
    assert f"KG injection from {kg}" in card and "per_batch routing, grad_x_act attribution" in card
    skipped = int(card.split("important mentions without a KG row: ")[1].split(";")[0])
    assert skipped > 0  # half the subjects have no KG row: counted, not an error
