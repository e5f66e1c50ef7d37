"""``kadapt export merged``: the TRELM delta merged into a plain transformers model that AutoModel loads."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModel

from kadapt.cli.app import main
from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.core.errors import PluginFormatError
from kadapt.core.family import build_plugin
from kadapt.plugins.trelm.export import export_merged
from kadapt.plugins.trelm.plugin import TRELMConfig
from kadapt.store.plugin_dir import load_plugin, save_plugin


@pytest.fixture(scope="module")
def roberta_dir(tiny_backbone_dir):
    return tiny_backbone_dir("roberta")


@pytest.fixture(scope="module")
def saved_trelm(roberta_dir, tmp_path_factory):
    backbone = FrozenBackbone.from_pretrained(roberta_dir)
    plugin = build_plugin("trelm", TRELMConfig(neurons_per_layer=(16,)), backbone.spec)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in range(plugin.delta.num_layers):
            plugin.delta.neurons(layer).copy_(torch.randperm(backbone.spec.intermediate_size, generator=gen)[:16])
            for p in (plugin.delta.in_weight[layer], plugin.delta.in_bias[layer], plugin.delta.out_weight[layer]):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return save_plugin(plugin, tmp_path_factory.mktemp("trelm") / "p", backbone.fingerprint)


def test_automodel_reproduces_the_plugin_pass(saved_trelm, roberta_dir, tmp_path):
    backbone = FrozenBackbone.from_pretrained(roberta_dir)
    before = hash_state_dict(backbone.model.state_dict())
    out = export_merged(saved_trelm, backbone, tmp_path / "merged")
    assert hash_state_dict(backbone.model.state_dict()) == before  # a copy was merged
    plugin = load_plugin(saved_trelm, backbone).plugin
    enc = backbone.tokenizer(["Barack Obama was born in Hawaii .", "Paris ."], padding=True, return_tensors="pt")
    merged = AutoModel.from_pretrained(out).eval()  # plain transformers, no kadapt
    with torch.no_grad():
        theirs = merged(**enc).last_hidden_state
        ours = plugin.inside_features(backbone, enc["input_ids"], enc["attention_mask"])
        plain = backbone.model(**enc).last_hidden_state
        # the same merge in memory, run by transformers: bit-identical to the exported folder
        in_memory = copy.deepcopy(backbone.model).eval()
        plugin.delta.merge(in_memory)
        assert torch.equal(in_memory(**enc).last_hidden_state, theirs)
    mask = enc["attention_mask"].bool()
    assert (ours - plain)[mask].abs().max() > 1e-2  # the delta matters
    # hooks add x·ΔW to x·W; the merged weights compute x·(W+ΔW): equal up to fp32 rounding
    assert (ours - theirs)[mask].abs().max() < 1e-5
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "manifest.json", "merges.txt",
                                                     "model.safetensors", "special_tokens_map.json",
                                                     "tokenizer.json", "tokenizer_config.json", "vocab.json"]


def test_cli_export_merged_and_wrong_kind(saved_trelm, roberta_dir, tmp_path, capsys):
    assert main(["export", "merged", str(saved_trelm), "--backbone", str(roberta_dir), "--out", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out == f"merged model written to {tmp_path / 'm'}\n"
    assert main(["export", "merged", str(saved_trelm), "--backbone", str(roberta_dir), "--out", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err == (f"kadapt: error: {tmp_path / 'm'}: folder is not empty; pass overwrite=True "
                                       "(CLI: --overwrite) to replace it\n")


def test_export_merged_refuses_another_kind(roberta_dir, tmp_path):
    backbone = FrozenBackbone.from_pretrained(roberta_dir)
    plugin = build_plugin("kadapter", {"adapter_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
                          backbone.spec)
    folder = save_plugin(plugin, tmp_path / "k", backbone.fingerprint)
    with pytest.raises(PluginFormatError, match=r"kadapt_config.json: kind is 'kadapter', expected 'trelm'"):
        export_merged(folder, backbone, tmp_path / "m")
