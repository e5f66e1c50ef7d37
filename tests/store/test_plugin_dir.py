"""The plug-in file format: round trip, strictness, atomic writes, fingerprint checks."""
from __future__ import annotations

import json

import pytest

from kadapt.core.folders import FolderExistsError
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import FingerprintMismatchError, PluginFormatError
from kadapt.store.plugin_dir import describe_plugin, load_plugin, save_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.kadapter.plugin import KAdapterConfig

CFG = KAdapterConfig(name="factual", adapter_size=32, num_attention_heads=4, intermediate_size=64, layers=(0, 2, 3))


@pytest.fixture()
def saved(tmp_path, tiny_backbone):
    torch.manual_seed(1)
    plugin = build_plugin("kadapter", CFG, tiny_backbone.spec).eval()
    heads = {"relation_classification.classifier.weight": torch.randn(3, 8)}
    save_plugin(plugin, tmp_path / "p", tiny_backbone.fingerprint, objectives=[{"name": "relation_classification"}],
                heads=heads, card={"data": "fixture", "metrics": {"accuracy": 0.5}})
    return plugin, tmp_path / "p"


def _outputs(plugin, backbone):
    enc = backbone.tokenizer(["Obama was born in Hawaii .", "Paris ."], padding=True, return_tensors="pt")
    states = backbone.encode(enc["input_ids"], enc["attention_mask"], plugin.required_layers())
    return plugin.adapt(states, enc["attention_mask"])


def test_round_trip_is_bit_identical(saved, tiny_backbone):
    plugin, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "adapter_config.json", "manifest.json", "model.safetensors",
                                                      "objective_heads.safetensors"]
    loaded = load_plugin(path, tiny_backbone)
    assert loaded.kind == "kadapter" and loaded.name == "factual"
    assert torch.equal(_outputs(plugin, tiny_backbone), _outputs(loaded.plugin, tiny_backbone))
    assert set(loaded.heads) == {"relation_classification.classifier.weight"}
    record = json.loads((path / "adapter_config.json").read_text())
    assert record["format_version"] == 1 and record["created_by"].startswith("kadapt ")
    assert record["backbone"]["weights_sha256"] == tiny_backbone.fingerprint.weights_sha256
    assert "47,251,200" in (path / "README.md").read_text()  # size note in the card


def test_other_backbone_fingerprint_fails(saved, tiny_backbone_dir):
    _, path = saved
    other = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", seed=7))
    with pytest.raises(FingerprintMismatchError) as err:
        load_plugin(path, other)
    assert "adapter_config.json" in str(err.value) and "weights_sha256" in str(err.value)


def test_truncated_safetensors(saved, tiny_backbone):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(PluginFormatError, match="model.safetensors: not a valid safetensors"):
        load_plugin(path, tiny_backbone)
    with pytest.raises(PluginFormatError, match="model.safetensors"):
        describe_plugin(path)


def test_garbage_safetensors(saved, tiny_backbone):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(PluginFormatError, match="model.safetensors"):
        load_plugin(path, tiny_backbone)


def _edit_config(path, **changes):
    record = json.loads((path / "adapter_config.json").read_text())
    record.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(record))


@pytest.mark.parametrize("changes, message", [
    ({"kind": "nonexistent"}, "unknown plug-in kind 'nonexistent'"),
    ({"format_version": 99}, "unknown format_version 99"),
])
def test_bad_config_fields(saved, tiny_backbone, changes, message):
    _, path = saved
    _edit_config(path, **changes)
    with pytest.raises(PluginFormatError, match=message):
        load_plugin(path, tiny_backbone)


def test_wrong_expected_kind(saved, tiny_backbone):
    _, path = saved
    with pytest.raises(PluginFormatError, match="kind is 'kadapter', expected 'jaket'"):
        load_plugin(path, tiny_backbone, expected_kind="jaket")


def test_shape_mismatch_and_missing_keys(saved, tiny_backbone):
    _, path = saved
    record = json.loads((path / "adapter_config.json").read_text())
    record["config"]["intermediate_size"] = 48
    (path / "adapter_config.json").write_text(json.dumps(record))
    with pytest.raises(PluginFormatError, match="has shape"):
        load_plugin(path, tiny_backbone)
    record["config"]["intermediate_size"] = 64
    record["config"]["num_transformer_layers"] = 3
    (path / "adapter_config.json").write_text(json.dumps(record))
    with pytest.raises(PluginFormatError, match="missing keys"):
        load_plugin(path, tiny_backbone)
    record["config"]["num_transformer_layers"] = 1
    (path / "adapter_config.json").write_text(json.dumps(record))
    with pytest.raises(PluginFormatError, match="unexpected keys"):
        load_plugin(path, tiny_backbone)


def test_invalid_json_names_file_and_line(saved, tiny_backbone):
    _, path = saved
    (path / "adapter_config.json").write_text('{\n  "kind": "kadapter",\n  oops\n}')
    with pytest.raises(PluginFormatError, match=r"adapter_config.json:3: invalid JSON"):
        load_plugin(path, tiny_backbone)


def test_save_leaves_no_temp_files_and_overwrite_is_atomic(saved, tiny_backbone):
    plugin, path = saved
    # issue 19: saving over an existing plug-in is refused unless asked for
    with pytest.raises(FolderExistsError, match=r"p: a plug-in already exists here; pass overwrite=True"):
        save_plugin(plugin, path, tiny_backbone.fingerprint)
    save_plugin(plugin, path, tiny_backbone.fingerprint, overwrite=True)
    assert not [p for p in path.iterdir() if p.name.startswith(".")]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging/aside folders left
