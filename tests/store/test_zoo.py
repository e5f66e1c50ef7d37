"""The plug-in catalog: safe names, never overwriting, grouping by backbone fingerprint."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.store.plugin_dir import save_plugin
from kadapt.core.family import build_plugin
from kadapt.store.zoo import Zoo
from run_kit import ADAPTER, BACKBONE_KW, tree_digest


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    from kadapt.core.backbone import FrozenBackbone

    return FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **BACKBONE_KW))


def _plugin_dir(path, backbone, name="p", fingerprint=None, seed=0):
    torch.manual_seed(seed)
    plugin = build_plugin("kadapter", {"name": name, **ADAPTER}, backbone.spec)
    return save_plugin(plugin, path, fingerprint or backbone.fingerprint,
                       objectives=[{"name": "relation_classification"}])


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", ".", ".hidden", "", "a\\b", "x" * 200, "a b",
                                  "../../etc/passwd", "ok/../../x"])
def test_names_that_could_escape_are_rejected(tmp_path, name):
    zoo = Zoo(tmp_path / "zoo")
    with pytest.raises(KadaptError):
        zoo.path_of(name)


def test_plain_names_stay_inside(tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    for name in ("factual", "factual-small", "lin_2.v1", "A1"):
        assert zoo.path_of(name).parent == (tmp_path / "zoo").resolve()


def test_symlink_out_of_the_zoo_is_rejected(tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "zoo" / "link")
    with pytest.raises(KadaptError, match="escapes"):
        Zoo(tmp_path / "zoo").path_of("link")


def test_add_never_overwrites_and_validates(tmp_path, backbone):
    zoo = Zoo(tmp_path / "zoo")
    entry = zoo.add(_plugin_dir(tmp_path / "a", backbone, "a"), "a")
    before = tree_digest(entry)
    with pytest.raises(KadaptError, match="already exists"):
        zoo.add(_plugin_dir(tmp_path / "b", backbone, "b", seed=1), "a")
    assert tree_digest(entry) == before
    with pytest.raises(KadaptError):
        zoo.add(_plugin_dir(tmp_path / "c", backbone, "c"), "../c")
    assert not (tmp_path / "c-copy").exists()
    # a corrupt plug-in never enters the catalog
    bad = _plugin_dir(tmp_path / "bad", backbone, "bad")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(PluginFormatError, match="model.safetensors"):
        zoo.add(bad, "bad")
    assert not (tmp_path / "zoo" / "bad").exists()
    assert [e["name"] for e in zoo.entries()] == ["a"]


def test_entries_show_and_by_backbone(tmp_path, backbone):
    zoo = Zoo(tmp_path / "zoo")
    assert zoo.entries() == [] and zoo.by_backbone() == {}
    other_fp = dataclasses.replace(backbone.fingerprint, weights_sha256="0" * 64)
    meta_fp = dataclasses.replace(backbone.fingerprint, weights_sha256=None)
    zoo.add(_plugin_dir(tmp_path / "f", backbone, "factual"), "factual")
    zoo.add(_plugin_dir(tmp_path / "l", backbone, "linguistic"), "linguistic")
    zoo.add(_plugin_dir(tmp_path / "o", backbone, "other", fingerprint=other_fp), "other")
    zoo.add(_plugin_dir(tmp_path / "m", backbone, "meta", fingerprint=meta_fp), "meta")
    spec = backbone.spec
    assert zoo.by_backbone() == {
        backbone.fingerprint.weights_sha256: ["factual", "linguistic"],
        "0" * 64: ["other"],
        f"{spec.model_type}-{spec.hidden_size}x{spec.num_layers}": ["meta"],
    }
    entries = {e["name"]: e for e in zoo.entries()}
    assert entries["factual"]["kind"] == "kadapter" and entries["factual"]["objectives"] == ["relation_classification"]
    assert entries["factual"]["parameters"] > 0
    shown = zoo.show("factual")
    assert shown["name"] == "factual" and shown["files"]["model.safetensors"]["elements"] == shown["parameters"]
    with pytest.raises(KadaptError, match="no entry named"):
        zoo.show("missing")
    # a broken entry is listed with its error, not hidden and not fatal; staging folders are not entries
    (tmp_path / "zoo" / "linguistic" / "kadapt_config.json").write_text("{not json")
    (tmp_path / "zoo" / ".half.partial").mkdir()
    (tmp_path / "zoo" / ".half.partial" / "kadapt_config.json").write_text("{}")
    entries = {e["name"]: e for e in zoo.entries()}
    assert set(entries) == {"factual", "linguistic", "other", "meta"}
    assert "kadapt_config.json" in entries["linguistic"]["error"]
    assert "linguistic" not in sum(zoo.by_backbone().values(), [])
