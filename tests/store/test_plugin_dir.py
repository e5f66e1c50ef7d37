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
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "kadapt_config.json", "manifest.json", "model.safetensors",
                                                      "objective_heads.safetensors"]
    loaded = load_plugin(path, tiny_backbone)
    assert loaded.kind == "kadapter" and loaded.name == "factual"
    assert torch.equal(_outputs(plugin, tiny_backbone), _outputs(loaded.plugin, tiny_backbone))
    assert set(loaded.heads) == {"relation_classification.classifier.weight"}
    record = json.loads((path / "kadapt_config.json").read_text())
    assert record["format_version"] == 2 and record["created_by"].startswith("kadapt ")
    assert record["backbone"]["weights_sha256"] == tiny_backbone.fingerprint.weights_sha256
    assert "47,251,200" in (path / "README.md").read_text()  # size note in the card


def test_other_backbone_fingerprint_fails(saved, tiny_backbone_dir):
    _, path = saved
    other = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", seed=7))
    with pytest.raises(FingerprintMismatchError) as err:
        load_plugin(path, other)
    assert "kadapt_config.json" in str(err.value) and "weights_sha256" in str(err.value)


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
    record = json.loads((path / "kadapt_config.json").read_text())
    record.update(changes)
    (path / "kadapt_config.json").write_text(json.dumps(record))


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
    record = json.loads((path / "kadapt_config.json").read_text())
    record["config"]["intermediate_size"] = 48
    (path / "kadapt_config.json").write_text(json.dumps(record))
    with pytest.raises(PluginFormatError, match="has shape"):
        load_plugin(path, tiny_backbone)
    record["config"]["intermediate_size"] = 64
    record["config"]["num_transformer_layers"] = 3
    (path / "kadapt_config.json").write_text(json.dumps(record))
    with pytest.raises(PluginFormatError, match="missing keys"):
        load_plugin(path, tiny_backbone)
    record["config"]["num_transformer_layers"] = 1
    (path / "kadapt_config.json").write_text(json.dumps(record))
    with pytest.raises(PluginFormatError, match="unexpected keys"):
        load_plugin(path, tiny_backbone)


def test_invalid_json_names_file_and_line(saved, tiny_backbone):
    _, path = saved
    (path / "kadapt_config.json").write_text('{\n  "kind": "kadapter",\n  oops\n}')
    with pytest.raises(PluginFormatError, match=r"kadapt_config.json:3: invalid JSON"):
        load_plugin(path, tiny_backbone)


def test_save_leaves_no_temp_files_and_overwrite_is_atomic(saved, tiny_backbone):
    plugin, path = saved
    # issue 19: saving over an existing plug-in is refused unless asked for
    with pytest.raises(FolderExistsError, match=r"p: a plug-in already exists here; pass overwrite=True"):
        save_plugin(plugin, path, tiny_backbone.fingerprint)
    save_plugin(plugin, path, tiny_backbone.fingerprint, overwrite=True)
    assert not [p for p in path.iterdir() if p.name.startswith(".")]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging/aside folders left


def _as_format_1(path):
    """Rewrite a saved plug-in as kadapt format 1 wrote it: config in adapter_config.json, version 1."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from kadapt.core.folders import write_manifest

    record = json.loads((path / "kadapt_config.json").read_text())
    record["format_version"] = 1
    (path / "kadapt_config.json").unlink()
    (path / "adapter_config.json").write_text(json.dumps(record))
    for name in ("model.safetensors", "objective_heads.safetensors"):
        with safe_open(str(path / name), "pt") as handle:
            meta = handle.metadata()
        save_file(load_file(path / name), path / name, {**meta, "format_version": "1"})
    write_manifest(path)


def test_format_1_folder_loads_with_one_line_note(saved, tiny_backbone, caplog):
    plugin, path = saved
    _as_format_1(path)
    with caplog.at_level("WARNING", logger="kadapt.store.plugin_dir"):
        loaded = load_plugin(path, tiny_backbone)
    assert torch.equal(_outputs(plugin, tiny_backbone), _outputs(loaded.plugin, tiny_backbone))
    notes = [r.getMessage() for r in caplog.records]
    assert notes == [f"{path}: kadapt plug-in of format 1 (config in adapter_config.json, now named "
                     "kadapt_config.json); it loads as is, re-save it to write the new name"]
    assert describe_plugin(path)["format_version"] == 1


def test_peft_folder_is_refused_with_how_to_load_it(tmp_path, tiny_backbone):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "base_model_name_or_path": "x"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(PluginFormatError) as err:
        load_plugin(folder, tiny_backbone)
    assert str(err.value) == (f"{folder / 'adapter_config.json'}: a PEFT adapter (peft_type 'LORA'), not a kadapt "
                              "plug-in; load it with peft: PeftModel.from_pretrained(base_model, folder)")


def test_adapterhub_folder_is_refused_with_how_to_load_it(tmp_path, tiny_backbone):
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"config": {"architecture": "lora"}, "name": "t",
                                                            "model_name": "roberta-base", "model_type": "roberta"}))
    (folder / "pytorch_adapter.bin").write_bytes(b"")
    with pytest.raises(PluginFormatError) as err:
        describe_plugin(folder)
    assert str(err.value) == (f"{folder / 'adapter_config.json'}: an AdapterHub (`adapters` library) adapter "
                              "(pytorch_adapter.bin), not a kadapt plug-in; load it with adapters: adapters.init(model); "
                              "model.load_adapter(folder)")
