"""Import of reference K-Adapter checkpoints (microsoft/K-Adapter layout) and export back to it.

The reference-style model (:mod:`kadapt.testing.kadapter_reference`) follows the reference's math and key
names; its state dict is saved the way ``fac-adapter.py`` saves (``torch.save(model.state_dict())``).
"""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from kadapt.cli.app import main
from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.core.family import build_plugin
from kadapt.plugins.kadapter.plugin import KAdapterConfig
from kadapt.plugins.kadapter.reference_io import export_reference_layout, import_reference_checkpoint
from kadapt.store.plugin_dir import load_plugin, save_plugin
from kadapt.testing.kadapter_reference import ReferenceAdapterModel, randomize

LAYERS = (0, 2, 3)
SIZES = dict(size=32, heads=4, ffn=64, layers=2)


@pytest.fixture(scope="module")
def roberta(tiny_backbone_dir):
    return FrozenBackbone.from_pretrained(tiny_backbone_dir("roberta"))


def reference_model(hidden=64, head="factual", seed=0):
    return randomize(ReferenceAdapterModel(hidden, LAYERS, head=head, labels=7, **SIZES), seed)


@pytest.fixture()
def checkpoint(tmp_path):
    ref = reference_model()
    path = tmp_path / "fac-adapter" / "pytorch_model.bin"
    path.parent.mkdir()
    torch.save(ref.state_dict(), path)
    return ref, path


def _batch(backbone, texts):
    enc = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = backbone.model(**enc, output_hidden_states=True).hidden_states
    return states, enc["attention_mask"]


def _import(path, backbone, out, **kw):
    return load_plugin(import_reference_checkpoint(path, backbone, out, layers=kw.pop("layers", LAYERS),
                                                   heads=kw.pop("heads", 4), **kw), backbone)


def test_imported_adapter_matches_the_reference_unpadded(checkpoint, roberta, tmp_path):
    ref, path = checkpoint
    loaded = _import(path, roberta, tmp_path / "plugin", name="factual")
    states, mask = _batch(roberta, ["Barack Obama was born in Hawaii ."])
    assert bool(mask.all())
    with torch.no_grad():
        ours = loaded.plugin.adapt(dict(enumerate(states)), mask)
        theirs = ref.adapter_output(states)
    assert (ours - theirs).abs().max().item() < 1e-5
    assert loaded.plugin.config.num_transformer_layers == 2 and loaded.plugin.config.intermediate_size == 64
    assert loaded.plugin.layer_ids == LAYERS and loaded.name == "factual"
    assert {k: torch.equal(v, ref.state_dict()[k]) for k, v in loaded.heads.items()} == {
        f"{m}.{p}": True for m in ("com_dense", "dense", "out_proj") for p in ("weight", "bias")}
    assert loaded.record["objectives"] == [{"name": "reference_pretraining_head",
                                            "config": {"script": "fac-adapter.py", "out_features": 7}}]
    card = (tmp_path / "plugin" / "README.md").read_text()
    assert f"Imported from the reference K-Adapter checkpoint `{path}`" in card and "attends to padding" in card


def test_padding_is_the_documented_difference(checkpoint, roberta, tmp_path):
    """kadapt masks padding: a padded row equals the reference run on that row alone (no padding); the
    reference run on the padded batch differs (it attends to padding)."""
    ref, path = checkpoint
    loaded = _import(path, roberta, tmp_path / "plugin")
    texts = ["Barack Obama was born in Hawaii .", "Paris ."]
    states, mask = _batch(roberta, texts)
    short = int(mask[1].sum())
    with torch.no_grad():
        ours = loaded.plugin.adapt(dict(enumerate(states)), mask)[1, :short]
        reference_padded = ref.adapter_output(states)[1, :short]
        alone_states, _ = _batch(roberta, texts[1:])
        reference_alone = ref.adapter_output(alone_states)[0]
    assert (ours - reference_alone).abs().max().item() < 1e-5
    assert (ours - reference_padded).abs().max().item() > 1e-3


def test_legacy_torch_format_and_safetensors_copy_import_alike(checkpoint, roberta, tmp_path):
    from safetensors.torch import save_file

    ref, path = checkpoint
    legacy = tmp_path / "legacy.bin"
    torch.save(ref.state_dict(), legacy, _use_new_zipfile_serialization=False)
    copy = tmp_path / "copy.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, copy)
    a = _import(legacy, roberta, tmp_path / "a").plugin.state_dict()
    b = _import(copy, roberta, tmp_path / "b").plugin.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and set(a) == set(b)


def test_round_trip_of_an_imported_checkpoint_is_bit_identical(checkpoint, roberta, tmp_path):
    ref, path = checkpoint
    first = import_reference_checkpoint(path, roberta, tmp_path / "p1", layers=LAYERS, heads=4, name="factual")
    exported = export_reference_layout(first, tmp_path / "export")
    tensors = load_file(exported / "model.safetensors")
    assert set(tensors) == set(ref.state_dict()) and all(torch.equal(tensors[k], v) for k, v in ref.state_dict().items())
    sidecar = json.loads((exported / "kadapter_reference.json").read_text())
    assert sidecar["adapter_list"] == list(LAYERS) and sidecar["adapter_skip_layers"] == 0
    second = import_reference_checkpoint(exported, roberta, tmp_path / "p2")  # layers, heads, name: sidecar
    for name in ("model.safetensors", "objective_heads.safetensors", "kadapt_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_round_trip_of_a_kadapt_plugin_is_bit_identical(roberta, tmp_path):
    config = KAdapterConfig(name="linguistic", adapter_size=32, num_attention_heads=4, intermediate_size=64,
                            layers="paper", dropout=0.0)
    torch.manual_seed(3)
    plugin = build_plugin("kadapter", config, roberta.spec)
    for param in plugin.parameters():
        torch.nn.init.normal_(param, std=0.1)
    original = save_plugin(plugin, tmp_path / "p", roberta.fingerprint)
    back = import_reference_checkpoint(export_reference_layout(original, tmp_path / "e", backbone=roberta), roberta,
                                       tmp_path / "q")
    for name in ("model.safetensors", "kadapt_config.json"):
        a, b = (original / name).read_bytes(), (back / name).read_bytes()
        if name == "kadapt_config.json":
            a, b = json.loads(a), json.loads(b)
        assert a == b, name


def test_linguistic_head_is_kept(roberta, tmp_path):
    ref = reference_model(head="linguistic")
    path = tmp_path / "lin.bin"
    torch.save(ref.state_dict(), path)
    loaded = _import(path, roberta, tmp_path / "p")
    assert loaded.record["objectives"][0]["config"] == {"script": "lin-adapter.py", "out_features": 7}
    assert "self_attention.output.LayerNorm.weight" in loaded.heads and len(loaded.heads) == 16


# ------------------------------------------------------------------------------------------- bad input
def _saved(tmp_path, state, name="bad.bin"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_missing_layer(roberta, tmp_path):
    state = {k: v for k, v in reference_model().state_dict().items() if not k.startswith("adapter.1.encoder.layer.1.")}
    path = _saved(tmp_path, state)
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == (f"{path}: missing key 'adapter.1.encoder.layer.1.attention.self.query.weight' "
                              "(16 missing; the checkpoint's keys imply 3 adapter layers of 2 transformer layers each)")


def test_missing_adapter_layer_against_the_layer_list(roberta, tmp_path):
    state = {k: v for k, v in reference_model().state_dict().items() if not k.startswith("adapter.2.")}
    path = _saved(tmp_path, state)
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == (f"{path}: the checkpoint has 2 adapter layers (keys adapter.0 .. adapter.1) but the "
                              "layer list [0, 2, 3] has 3 entries (pass --layers with one backbone layer per adapter)")


def test_extra_unknown_key(roberta, tmp_path):
    state = {**reference_model().state_dict(), "adapter.0.encoder.layer.0.attention.self.gate.weight": torch.zeros(2)}
    path = _saved(tmp_path, state)
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == (f"{path}: unexpected key 'adapter.0.encoder.layer.0.attention.self.gate.weight' (not "
                              "part of the reference AdapterModel layout)")
    path = _saved(tmp_path, {**reference_model().state_dict(), "classifier.weight": torch.zeros(2)}, "b2.bin")
    with pytest.raises(PluginFormatError, match=r"bad.bin|b2.bin: unexpected key 'classifier.weight' \(not part"):
        _import(path, roberta, tmp_path / "p")


def test_wrong_hidden_size_for_the_backbone(roberta, tmp_path):
    path = _saved(tmp_path, reference_model(hidden=48).state_dict())
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == (f"{path}: key 'adapter.0.down_project.weight' has shape (32, 48): the adapters read "
                              f"hidden size 48, backbone {roberta.name} has hidden size 64")


def test_wrong_shape_inside(roberta, tmp_path):
    state = reference_model().state_dict()
    state["adapter.2.encoder.layer.0.output.dense.weight"] = torch.zeros(32, 60)
    path = _saved(tmp_path, state)
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == (f"{path}: key 'adapter.2.encoder.layer.0.output.dense.weight' has shape (32, 60), "
                              "expected (32, 64) (hidden 64, adapter_size 32, intermediate 64)")


def test_full_pickled_model_is_refused_by_the_safe_loader(roberta, tmp_path):
    path = _saved(tmp_path, reference_model())
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == (f"{path}: not a plain state dict (it pickles "
                              "kadapt.testing.kadapter_reference.ReferenceAdapterModel); the safe loader "
                              "(torch.load weights_only=True) refuses it — save model.state_dict() instead")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(roberta, tmp_path, legacy):
    path = tmp_path / "cut.bin"
    torch.save(reference_model().state_dict(), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    reason = (r"unexpected EOF, expected \d+ more bytes" if legacy
              else "PytorchStreamReader failed reading zip archive: failed finding central directory")
    assert re.fullmatch(f"{re.escape(str(path))}: truncated or corrupt checkpoint \\({reason}\\)", str(err.value))


def test_active_skip_layers_and_bad_heads_are_refused(checkpoint, roberta, tmp_path):
    _, path = checkpoint
    with pytest.raises(KadaptError, match=r"adapter_skip_layers 3 adds earlier adapter outputs"):
        _import(path, roberta, tmp_path / "p", skip_layers=3)
    _import(path, roberta, tmp_path / "ok", skip_layers=6)  # 6 > 3 adapters: never fires in the reference
    with pytest.raises(PluginFormatError, match=r"adapter_size 32 is not divisible by num_attention_heads 5 "
                                                r"\(options --layers / --heads\)"):
        _import(path, roberta, tmp_path / "p", heads=5)


def test_cli_import_and_export(checkpoint, roberta, tiny_backbone_dir, tmp_path, capsys):
    _, path = checkpoint
    backbone = str(tiny_backbone_dir("roberta"))
    assert main(["import", "kadapter", str(path), "--backbone", backbone, "--out", str(tmp_path / "p"),
                 "--layers", "0,2,3", "--heads", "4"]) == 0
    assert main(["export", "kadapter", str(tmp_path / "p"), "--out", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"plug-in written to {tmp_path / 'p'}",
                                                    f"reference-layout weights written to {tmp_path / 'e'}"]
    assert main(["import", "kadapter", str(path), "--backbone", backbone, "--out", str(tmp_path / "q")]) == 2
    assert capsys.readouterr().err == (  # the reference default 0,11,22 needs a 24-layer backbone
        f"kadapt: error: {path}: K-Adapter layers [0, 11, 22] must be strictly increasing indices in 0..4 for a "
        "4-layer backbone (options --layers / --heads)\n")


def test_non_finite_weight(roberta, tmp_path):
    state = reference_model().state_dict()
    state["adapter.1.up_project.bias"][3] = float("nan")
    path = _saved(tmp_path, state)
    with pytest.raises(PluginFormatError) as err:
        _import(path, roberta, tmp_path / "p")
    assert str(err.value) == f"{path}: tensor 'adapter.1.up_project.bias' has 1 non-finite value(s) (NaN/Inf)"
