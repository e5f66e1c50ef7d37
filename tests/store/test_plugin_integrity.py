"""Issue 19: manifest, config <-> weights binding, numerics at load, overwrite refusal, mixed folders."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from kadapt.core.errors import PluginFormatError
from kadapt.core.family import build_plugin
from kadapt.core.fileio import load_tensors
from kadapt.core.folders import FolderExistsError
from kadapt.store.plugin_dir import describe_plugin, load_plugin, save_plugin
from run_kit import ADAPTER, BACKBONE_KW

LABELS = ["P19", "P20", "P27"]


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    from kadapt.core.backbone import FrozenBackbone

    return FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **BACKBONE_KW))


def _save(backbone, path, seed=0, **kw):
    torch.manual_seed(seed)
    plugin = build_plugin("kadapter", {"name": "p", **ADAPTER}, backbone.spec)
    objectives = [{"name": "relation_classification", "config": {"labels": list(LABELS)}}]
    return plugin, save_plugin(plugin, path, backbone.fingerprint, objectives=objectives,
                               heads={"relation_classification.w": torch.ones(3, 2)}, **kw)


def _edit(path, change):
    record = json.loads((path / "kadapt_config.json").read_text())
    change(record)
    (path / "kadapt_config.json").write_text(json.dumps(record))


@pytest.mark.parametrize("change, key", [
    (lambda r: r["config"].__setitem__("num_attention_heads", 4), "config.num_attention_heads"),
    (lambda r: r["config"].__setitem__("layers", [0, 1]), "config.layers"),
    (lambda r: r["objectives"][0]["config"].__setitem__("labels", ["P20", "P19", "P27"]),
     "objectives[0].config.labels[0]"),
])
def test_shape_preserving_config_edits_are_refused_naming_file_and_key(tmp_path, backbone, change, key):
    _, path = _save(backbone, tmp_path / "p")
    load_plugin(path, backbone)
    _edit(path, change)
    with pytest.raises(PluginFormatError) as err:
        load_plugin(path, backbone)
    message = str(err.value)
    assert message.startswith(f"{path / 'kadapt_config.json'}: key {key!r} is ") and "\n" not in message
    assert "model.safetensors was trained with" in message


def test_card_edit_or_foreign_file_fails_the_manifest(tmp_path, backbone):
    _, path = _save(backbone, tmp_path / "p")
    (path / "README.md").write_text("edited")
    with pytest.raises(PluginFormatError, match=r"README.md: content differs from manifest.json"):
        load_plugin(path, backbone)
    _, path = _save(backbone, tmp_path / "q")
    (path / "memory.safetensors").write_bytes((tmp_path / "p" / "objective_heads.safetensors").read_bytes())
    with pytest.raises(PluginFormatError, match=r"memory.safetensors"):
        describe_plugin(path)


def test_weights_from_another_save_are_a_mix_and_refused(tmp_path, backbone):
    _, old = _save(backbone, tmp_path / "old", seed=1)
    _, new = _save(backbone, tmp_path / "new", seed=2)
    (old / "model.safetensors").write_bytes((new / "model.safetensors").read_bytes())
    with pytest.raises(PluginFormatError, match=r"old/model.safetensors: content differs from manifest.json"):
        load_plugin(old, backbone)


def test_folder_from_before_manifests_and_binding_loads_with_a_note(tmp_path, backbone, caplog):
    plugin, path = _save(backbone, tmp_path / "p")
    (path / "manifest.json").unlink()
    for name in ("model.safetensors", "objective_heads.safetensors"):
        tensors, meta = load_tensors(path / name)
        save_file(tensors, path / name, {"kind": meta["kind"], "format_version": meta["format_version"]})
    with caplog.at_level(logging.INFO):
        loaded = load_plugin(path, backbone)
    assert all(torch.equal(a, b) for a, b in zip(loaded.plugin.state_dict().values(), plugin.state_dict().values()))
    notes = [r.getMessage() for r in caplog.records]
    assert any("no manifest.json" in n for n in notes) and any("no config_sha256" in n for n in notes)


def _rewrite_weights(path, change):
    tensors, meta = load_tensors(path / "model.safetensors")
    key = sorted(tensors)[0]
    tensors[key] = change(tensors[key])
    save_file(tensors, path / "model.safetensors", meta)
    (path / "manifest.json").unlink()  # as a hand-edited old folder would be
    return key


@pytest.mark.parametrize("change, message", [
    (lambda t: torch.full_like(t, float("nan")), "non-finite value"),
    (lambda t: torch.where(torch.arange(t.numel()).reshape(t.shape) == 0, float("inf"), t), "1 non-finite value"),
    (lambda t: t.to(torch.int32), "has dtype int32; plug-in weights must be floating point"),
])
def test_non_finite_and_integer_weights_are_refused(tmp_path, backbone, change, message):
    _, path = _save(backbone, tmp_path / "p")
    key = _rewrite_weights(path, change)
    with pytest.raises(PluginFormatError, match=rf"model.safetensors: tensor '{key}' .*{message}"):
        load_plugin(path, backbone)


def test_half_precision_weights_are_cast(tmp_path, backbone):
    plugin, path = _save(backbone, tmp_path / "p")
    _rewrite_weights(path, lambda t: t.to(torch.float16))
    loaded = load_plugin(path, backbone).plugin
    first = sorted(plugin.state_dict())[0]
    assert loaded.state_dict()[first].dtype == torch.float32
    assert torch.equal(loaded.state_dict()[first], plugin.state_dict()[first].half().float())


def test_save_over_another_backbones_plugin_is_refused(tmp_path, backbone, tiny_backbone_dir):
    _, path = _save(backbone, tmp_path / "p", seed=1)
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(FolderExistsError, match=r"p: a plug-in already exists here; pass overwrite=True"):
        _save(backbone, path, seed=2)
    assert (path / "model.safetensors").read_bytes() == before
    (tmp_path / "not-a-plugin").mkdir()
    (tmp_path / "not-a-plugin" / "notes.txt").write_text("mine")
    with pytest.raises(FolderExistsError):
        _save(backbone, tmp_path / "not-a-plugin")
    _save(backbone, path, seed=2, overwrite=True)
    assert (path / "model.safetensors").read_bytes() != before
