"""Fine-tuning modes: what trains (exact counts), what stays byte-identical, what a run saves, and
bit-identical reloads of every mode."""
from __future__ import annotations

import json

import pytest
import torch
from run_kit import HIDDEN, factual_recipe, finetune_recipe

from kadapt.core.backbone import hash_state_dict
from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import KadaptError, RecipeError
from kadapt.core.tuned_backbone import TunedBackbone
from kadapt.runs.recipe import FinetuneSection
from kadapt.runs.finetune import build_model, evaluate_run, finetune, load_finetuned
from kadapt.runs.infuse import infuse
from kadapt.core.objective import build_objective
from kadapt.runs.recipe import recipe_from_dict
from kadapt.runs.context import encode_records
from kadapt.runs.loop import TrainConfig, train

N_LABELS_KEY = "labels"


@pytest.fixture(scope="module")
def plugin_dir(world, backbone, backbone_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("modes-plugin")
    return infuse(recipe_from_dict(factual_recipe(world, backbone_dir, root / "f", epochs=1)),
                  backbone=backbone).plugin_dir


@pytest.fixture(scope="module")
def task(world, backbone):
    records = read_records("trex_rc", world["task_facts_train"])
    labels = sorted({r.label for r in records})
    return records, labels


def _model(backbone, plugin_dir, labels, mode: dict):
    torch.manual_seed(0)
    model = build_model(backbone, [plugin_dir], FinetuneSection(**mode))
    model.head = build_objective("relation_classification", model.feature_size, {N_LABELS_KEY: labels})
    return model


def _state_hashes(model) -> dict[str, str]:
    base = {k: v for k, v in model.backbone.model.state_dict().items() if ".kadapt_task." not in k}
    adapter = {k: v for k, v in model.backbone.model.state_dict().items() if ".kadapt_task." in k}
    return {"backbone_base": hash_state_dict(base), "adapter": hash_state_dict(adapter), "plugins": hash_state_dict(model.plugins.state_dict()),
            "head": hash_state_dict(model.head.state_dict())}


def _train_briefly(model, records, tmp_path):
    from kadapt.data.policy import ErrorPolicy

    encoded, _ = encode_records(model.head, records[:16], model.backbone.tokenizer, 48, ErrorPolicy(), "t")
    train(model, encoded, None, TrainConfig(epochs=1, batch_size=8, lr=1e-2, cpu=True, mixed_precision="no"),
          tmp_path, pad_id=model.backbone.tokenizer.pad_token_id)
    return encoded


def _expected_counts(backbone, model, labels, mode: dict) -> dict[str, int]:
    n_plugins = len(model.plugins)
    plugin_out = model.plugins[0].output_size
    features = HIDDEN * n_plugins if mode.get("fusion") == "kadapter" else HIDDEN + plugin_out
    layers = backbone.spec.num_layers
    backbone_counts = {
        "frozen": 0,
        "full": sum(p.numel() for p in backbone.model.parameters()),
        # LoRA on q and v: A (r x H) and B (H x r) per matrix and layer
        "lora": layers * 2 * (2 * 8 * HIDDEN),
        # sequential bottleneck after each FFN: down H -> H/16 and up H/16 -> H, with biases
        "bottleneck": layers * (HIDDEN * (HIDDEN // 16) + HIDDEN // 16 + (HIDDEN // 16) * HIDDEN + HIDDEN),
    }
    return {
        "head": 2 * features * len(labels) + len(labels),
        "fusion": n_plugins * ((HIDDEN + plugin_out) * HIDDEN + HIDDEN) if mode.get("fusion") == "kadapter" else 0,
        "plugins": sum(p.numel() for p in model.plugins.parameters()) if mode.get("plugins") == "trainable" else 0,
        "backbone": backbone_counts[mode.get("backbone", "frozen")],
    }


MODES = [
    {},
    {"plugins": "trainable"},
    {"fusion": "kadapter"},
    {"backbone": "full"},
    {"backbone": "lora"},
    {"backbone": "bottleneck", "plugins": "trainable", "fusion": "kadapter"},
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(m.values()) or "default")
def test_what_trains_and_what_stays(mode, backbone, plugin_dir, task, tmp_path):
    records, labels = task
    base_hash = backbone.fingerprint.weights_sha256
    model = _model(backbone, plugin_dir, labels, mode)
    assert model.trainable_counts() == _expected_counts(backbone, model, labels, mode)
    assert model.backbone.fingerprint == backbone.fingerprint  # base identity, whatever the mode
    before = _state_hashes(model)
    _train_briefly(model, records, tmp_path)
    after = _state_hashes(model)

    assert after["head"] != before["head"]
    full = mode.get("backbone") == "full"
    assert (after["backbone_base"] != before["backbone_base"]) == full  # lora/bottleneck: base untouched
    assert (after["adapter"] != before["adapter"]) == (mode.get("backbone") in ("lora", "bottleneck"))
    assert (after["plugins"] != before["plugins"]) == (mode.get("plugins") == "trainable")
    # the backbone the caller passed in is never changed (trainable modes work on a copy)
    assert hash_state_dict(backbone.model.state_dict()) == base_hash
    assert all(not p.requires_grad for p in backbone.model.parameters())


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(m.values()) or "default")
def test_every_mode_reloads_bit_identically(mode, world, backbone_dir, backbone, plugin_dir, tmp_path):
    out = tmp_path / "ft"
    recipe = finetune_recipe(world, backbone_dir, out, [plugin_dir], epochs=1)
    recipe["finetune"] = mode
    result = finetune(recipe_from_dict(recipe), backbone=backbone)

    files = {p.name for p in out.iterdir()}
    assert ("fusion.safetensors" in files) == (mode.get("fusion") == "kadapter")
    assert ("plugins.safetensors" in files) == (mode.get("plugins") == "trainable")
    assert ("backbone.safetensors" in files) == (mode.get("backbone") == "full")
    assert ("task_adapter.safetensors" in files) == (mode.get("backbone") in ("lora", "bottleneck"))
    config = json.loads((out / "head_config.json").read_text())
    assert config["backbone_fingerprint"]["weights_sha256"] == backbone.fingerprint.weights_sha256
    assert config["finetune"] == FinetuneSection(**mode).to_dict()

    again = evaluate_run(out, world["task_facts_test"], batch_size=8)
    for key, value in result.metrics["test"].items():
        assert again[key] == value, key
    assert (out / "eval" / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()

    # two independent reloads give bit-identical logits
    first, second = load_finetuned(out), load_finetuned(out, backbone=backbone)
    encoded, _ = encode_records(first.head, read_records("trex_rc", world["task_facts_test"]),
                                first.backbone.tokenizer, 48, ErrorPolicy(), "t")
    batch = collate(encoded, first.backbone.tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.equal(first(batch).logits, second(batch).logits)
    assert hash_state_dict(backbone.model.state_dict()) == backbone.fingerprint.weights_sha256


def test_full_mode_checks_the_tuned_weights(world, backbone_dir, backbone, tmp_path):
    out = tmp_path / "ft"
    recipe = finetune_recipe(world, backbone_dir, out, [], epochs=1, max_steps=1)
    recipe["finetune"] = {"backbone": "full"}
    finetune(recipe_from_dict(recipe), backbone=backbone)
    config = json.loads((out / "head_config.json").read_text())
    config["tuned_backbone_sha256"] = "0" * 64
    (out / "head_config.json").write_text(json.dumps(config))
    with pytest.raises(KadaptError, match="backbone.safetensors: sha256"):
        load_finetuned(out, backbone=backbone)


def test_bad_mode_values_are_recipe_errors(world, backbone_dir, tmp_path):
    recipe = finetune_recipe(world, backbone_dir, tmp_path, [])
    for bad, pattern in [({"backbone": "half"}, "finetune.backbone: 'half'"),
                         ({"fusion": "sum"}, "finetune.fusion"),
                         ({"lora_matrices": ["o"]}, "lora_matrices"),
                         ({"rank": 4}, r"unknown key\(s\) \['rank'\]")]:
        with pytest.raises(RecipeError, match=pattern):
            recipe_from_dict({**recipe, "finetune": bad}, "r.yaml")
    with pytest.raises(RecipeError, match="belongs to a finetune recipe"):
        recipe_from_dict({**factual_recipe(world, backbone_dir, tmp_path), "finetune": {}}, "r.yaml")


def test_trainable_backbone_rejects_frozen_mode(backbone):
    with pytest.raises(KadaptError, match="needs backbone mode"):
        TunedBackbone(backbone, FinetuneSection().backbone)


@pytest.mark.parametrize("mode", ["lora", "bottleneck"])
def test_task_adapter_loads_in_plain_adapters_code(mode, world, backbone_dir, backbone, plugin_dir, tmp_path):
    """The run's task adapter in the `adapters` library's own format: transformers + adapters, no kadapt."""
    import adapters
    from transformers import AutoModel

    out = tmp_path / "ft"
    recipe = finetune_recipe(world, backbone_dir, out, [plugin_dir], epochs=1)
    recipe["finetune"] = {"backbone": mode}
    finetune(recipe_from_dict(recipe), backbone=backbone)
    assert sorted(p.name for p in (out / "task_adapter").iterdir()) == [
        "adapter.safetensors", "adapter_config.json", "pytorch_adapter.bin"]
    assert json.loads((out / "head_config.json").read_text())["adapters_format"] == "task_adapter"
    tuned = load_finetuned(out, backbone=backbone).backbone.model.eval()
    enc = backbone.tokenizer(["Barack Obama was born in Hawaii .", "Paris ."], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = tuned(**enc).last_hidden_state
        plain_base = backbone.model(**enc).last_hidden_state
        for use_safetensors in (False, True):
            model = AutoModel.from_pretrained(backbone_dir).eval()
            adapters.init(model)
            name = model.load_adapter(str(out / "task_adapter"), use_safetensors=use_safetensors)
            model.set_active_adapters(name)
            assert name == "kadapt_task"
            assert torch.equal(model(**enc).last_hidden_state, want)
    assert not torch.equal(want, plain_base)  # the adapter trained: it changes the pass
