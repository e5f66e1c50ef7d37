"""K-Adapter plug-in: exact sizes, init, layer wiring, padding masking."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import PluginFormatError
from kadapt.core.family import build_plugin
from kadapt.plugins.kadapter.plugin import KAdapterConfig, kadapter_layer_parameters


def test_roberta_large_parameter_count_on_meta():
    from kadapt.testing.tiny import roberta_large_config

    backbone = FrozenBackbone.from_config(roberta_large_config(), meta=True)
    with torch.device("meta"):
        plugin = build_plugin("kadapter", None, backbone.spec)
    assert plugin.required_layers() == (0, 11, 23)
    assert plugin.num_parameters() == 47_251_200
    assert sum(p.numel() for p in plugin.adapter_layers[0].parameters()) == 15_750_400
    assert kadapter_layer_parameters(1024, 768, 2, 3072) == 15_750_400


def small_config(**kw):
    base = dict(adapter_size=32, num_attention_heads=4, intermediate_size=64, layers=(0, 2, 3), dropout=0.0)
    base.update(kw)
    return KAdapterConfig(**base)


def test_near_identity_init(tiny_backbone):
    torch.manual_seed(0)
    plugin = build_plugin("kadapter", small_config(), tiny_backbone.spec)
    for layer in plugin.adapter_layers:
        assert torch.all(layer.down.bias == 0) and torch.all(layer.up.bias == 0)
        assert abs(layer.up.weight.std().item() - 2e-4) < 5e-5
    enc = tiny_backbone.tokenizer(["Obama was born in Hawaii ."], return_tensors="pt")
    states = tiny_backbone.encode(enc["input_ids"], enc["attention_mask"], plugin.required_layers())
    out = plugin.adapt(states, enc["attention_mask"])
    # identity start: output = sum of the backbone states it read (skip connections), tiny up-projection
    expected = states[0] + states[2] + states[3]
    assert ((out - expected).norm() / expected.norm()).item() < 1e-3


def test_padding_does_not_change_outputs(tiny_backbone):
    torch.manual_seed(0)
    plugin = build_plugin("kadapter", small_config(init_std=0.2), tiny_backbone.spec).eval()
    tok = tiny_backbone.tokenizer
    alone = tok(["Paris is the capital of France ."], return_tensors="pt")
    padded = tok(["Paris is the capital of France .", "Obama studied at Columbia University in New York ."],
                 padding=True, return_tensors="pt")
    n = alone["input_ids"].shape[1]
    a = plugin.adapt(tiny_backbone.encode(alone["input_ids"], alone["attention_mask"], plugin.required_layers()),
               alone["attention_mask"])
    b = plugin.adapt(tiny_backbone.encode(padded["input_ids"], padded["attention_mask"], plugin.required_layers()),
               padded["attention_mask"])
    assert padded["input_ids"].shape[1] > n
    torch.testing.assert_close(b[0, :n], a[0], rtol=1e-5, atol=1e-5)


def test_default_layers_for_small_backbone(tiny_backbone):
    plugin = build_plugin("kadapter", small_config(layers=None), tiny_backbone.spec)
    assert plugin.required_layers() == (0, 1, 3)  # (0, L/2-1, L-1) for L=4


def test_layer_presets_paper_default_and_reference_on_roberta_large():
    from kadapt.testing.tiny import roberta_large_config

    backbone = FrozenBackbone.from_config(roberta_large_config(), meta=True)
    assert KAdapterConfig().layers == "paper"
    with torch.device("meta"):
        paper = build_plugin("kadapter", {"layers": "paper"}, backbone.spec)
        reference = build_plugin("kadapter", {"layers": "reference"}, backbone.spec, source="r.yaml")
    assert paper.required_layers() == (0, 11, 23)  # §3.2
    assert reference.required_layers() == (0, 11, 22)  # the anchor code's run scripts
    assert reference.num_parameters() == paper.num_parameters() == 47_251_200
    assert paper.config.to_dict()["layers"] == "paper"
    with pytest.raises(PluginFormatError, match="unknown preset 'papers'"):
        build_plugin("kadapter", {"layers": "papers"}, backbone.spec)


def test_paper_size_is_transformer_layers_plus_projections():
    """The paper's "about 42M" is the adapters' transformer layers alone: 3 x 2 x 7,087,872."""
    per_trm = kadapter_layer_parameters(1024, 768, 1, 3072) - kadapter_layer_parameters(1024, 768, 0, 3072)
    assert 3 * 2 * per_trm == 42_527_232
    assert 3 * kadapter_layer_parameters(1024, 768, 0, 3072) == 47_251_200 - 42_527_232


@pytest.mark.parametrize("layers", [(0, 9), (3, 1), (1, 1)])
def test_bad_layers_rejected(tiny_backbone, layers):
    with pytest.raises(PluginFormatError, match="layers"):
        build_plugin("kadapter", small_config(layers=layers), tiny_backbone.spec)


def test_unknown_config_key_and_bad_type_rejected(tiny_backbone):
    with pytest.raises(PluginFormatError, match="unknown KAdapterConfig key"):
        build_plugin("kadapter", {"adapter_sise": 32}, tiny_backbone.spec, source="x.json")
    with pytest.raises(PluginFormatError, match="expected an integer"):
        build_plugin("kadapter", {"adapter_size": "32"}, tiny_backbone.spec, source="x.json")


def test_gradients_reach_adapter_not_backbone(tiny_backbone):
    plugin = build_plugin("kadapter", small_config(), tiny_backbone.spec)
    enc = tiny_backbone.tokenizer(["Obama was born in Hawaii ."], return_tensors="pt")
    states = tiny_backbone.encode(enc["input_ids"], enc["attention_mask"], plugin.required_layers())
    plugin.adapt(states, enc["attention_mask"]).pow(2).sum().backward()
    assert all(p.grad is not None for p in plugin.parameters())
    assert all(p.grad is None for p in tiny_backbone.model.parameters())
