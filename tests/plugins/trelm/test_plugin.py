"""TRELM mask adapter and plug-in: sparse trainable delta, hooks vs scattered weights, exact
merge/unmerge, frozen base weights, re-selection, save/load, composition with outside plug-ins."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors import safe_open

from kadapt.core.plugin import StepInfo
from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.cli.app import main
from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.data.records import RelationExample
from kadapt.core.errors import KadaptError
from kadapt.core.objective import build_objective
from kadapt.store.plugin_dir import load_plugin, save_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.trelm.ffn import ffn_blocks
from kadapt.plugins.trelm.mask_adapter import SparseFFNDelta
from kadapt.testing.tiny import roberta_large_config

RECORDS = [
    RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "mem:1"),
    RelationExample("Marie Curie worked in Paris with Pierre Curie .", (0, 11), (22, 27), "P937", "mem:2"),
    RelationExample("Paris is the capital of France .", (0, 5), (24, 30), "P1376", "mem:3"),
    RelationExample("Obama studied at Columbia University in New York .", (0, 5), (17, 36), "P69", "mem:4"),
]


def random_delta(spec, counts, seed=0) -> SparseFFNDelta:
    gen = torch.Generator().manual_seed(seed)
    delta = SparseFFNDelta(spec.hidden_size, spec.intermediate_size, counts)
    with torch.no_grad():
        for layer, count in enumerate(counts):
            delta.neurons(layer).copy_(torch.randperm(spec.intermediate_size, generator=gen)[:count].sort().values)
            for p in (delta.in_weight[layer], delta.in_bias[layer], delta.out_weight[layer]):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return delta


def encoded(backbone, texts=("Barack Obama was born in Hawaii .", "Paris is the capital of France and more .")):
    enc = backbone.tokenizer(list(texts), return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def last_hidden(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).last_hidden_state


def test_roberta_large_parameter_count_on_meta(tmp_path, capsys):
    roberta_large_config().save_pretrained(tmp_path)
    assert main(["plugin-info", "--kind", "trelm", "--backbone", str(tmp_path), "--meta", "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    # 24 layers x 128 neurons x (1024 input-row values + 1 bias + 1024 output-column values)
    assert info["parameters"] == 24 * 128 * (2 * 1024 + 1) == 6_294_528
    assert info["placement"] == "inside" and info["output_size"] == 1024 and info["required_layers"] == []
    assert main(["plugin-info", "--kind", "trelm", "--backbone", str(tmp_path), "--meta", "--json",
                 "--set", "neurons_per_layer=[4096]"]) == 0
    dense = json.loads(capsys.readouterr().out)["parameters"]
    assert dense == 24 * (4096 * 1024 * 2 + 4096)  # every FFN neuron = a dense delta on W_in, b_in, W_out
    assert main(["plugin-info", "--kind", "trelm", "--backbone", str(tmp_path), "--meta"]) == 0
    text = capsys.readouterr().out
    for line in ("  routing: 'per_batch'  # per_batch (paper", "  attribution: 'ig'  # ig (paper", "  inject_kg: ''  # KG folder",
                 "  inject_entity: True  #", "  inject_relation: True  #", "  routing_warmup_steps: 50  #"):
        assert line in text, line


def test_hooks_equal_scattered_weights_and_leave_base_untouched(backbone):
    ids, mask = encoded(backbone)
    before = hash_state_dict(backbone.model.state_dict())
    delta = random_delta(backbone.spec, [5, 3])
    reference = copy.deepcopy(backbone.model)
    with torch.no_grad():
        for layer, block in enumerate(ffn_blocks(reference)):
            idx = delta.neurons(layer)
            block.input_linear.weight[idx] += delta.in_weight[layer]
            block.input_linear.bias[idx] += delta.in_bias[layer]
            block.output_linear.weight[:, idx] += delta.out_weight[layer]
        expected = last_hidden(reference, ids, mask)
        plain = last_hidden(backbone.model, ids, mask)
        with delta.installed(backbone.model):
            hooked = last_hidden(backbone.model, ids, mask)
        after_hooks = last_hidden(backbone.model, ids, mask)
    torch.testing.assert_close(hooked, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(hooked, plain, atol=1e-3)
    assert torch.equal(after_hooks, plain)  # hooks removed on exit
    assert hash_state_dict(backbone.model.state_dict()) == before


def test_merge_then_unmerge_is_bit_exact(backbone):
    ids, mask = encoded(backbone)
    delta = random_delta(backbone.spec, [6, 2], seed=3)
    copy_model = copy.deepcopy(backbone.model)
    original = hash_state_dict(copy_model.state_dict())
    with torch.no_grad(), delta.installed(backbone.model):
        hooked = last_hidden(backbone.model, ids, mask)
    saved = delta.merge(copy_model)
    assert hash_state_dict(copy_model.state_dict()) != original
    with torch.no_grad():
        torch.testing.assert_close(last_hidden(copy_model, ids, mask), hooked, atol=1e-5, rtol=1e-5)
    delta.unmerge(copy_model, saved)
    assert hash_state_dict(copy_model.state_dict()) == original


def tiny_trelm(backbone, **config):
    base = {"neurons_per_layer": [4], "ig_steps": 4, "routing": "periodic", "reselect_every": 2,
            "routing_warmup_steps": 0, "attribution_rows": 4,
            "memory_slots": 32, "memory_window": 2}
    return build_plugin("trelm", {**base, **config}, backbone.spec)


def trelm_model(backbone, plugin, seed=0):
    torch.manual_seed(seed)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("trelm_knowledge", model.feature_size, {"inject_both_directions": False})
    model.head.bind_backbone(backbone)
    return model


def trelm_batch(backbone, model):
    return collate([model.head.encode(r, backbone.tokenizer, 32) for r in RECORDS], backbone.tokenizer.pad_token_id)


def test_gradients_and_optimizer_state_only_for_selected_entries(backbone):
    torch.manual_seed(0)
    plugin = tiny_trelm(backbone)
    model = trelm_model(backbone, plugin)
    batch = trelm_batch(backbone, model)
    before = hash_state_dict(backbone.model.state_dict())
    optimizer = torch.optim.AdamW(plugin.parameters(), lr=1e-2)
    model.train()
    for step in range(4):
        model.on_step(StepInfo(model, batch, step, 0, optimizer))
        loss = model(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    hidden = backbone.spec.hidden_size
    shapes = sorted(tuple(p.shape) for p in plugin.parameters())
    assert shapes == sorted([(4, hidden), (4,), (hidden, 4)] * 2)
    assert all(p.grad is None for p in backbone.model.parameters())
    assert not any(p.requires_grad for p in backbone.model.parameters())
    state_shapes = {tuple(s["exp_avg"].shape) for s in optimizer.state.values()}
    assert state_shapes == {(4, hidden), (4,), (hidden, 4)} and len(optimizer.state) == 6
    assert any(p.abs().sum() > 0 for p in plugin.delta.in_weight)  # it did learn something
    assert int(plugin.selections) == 2
    assert [r["step"] for r in plugin.selection_log] == [0, 2]  # selected at step 0, then every 2 steps
    assert hash_state_dict(backbone.model.state_dict()) == before  # base weights byte-identical


def test_reselection_keeps_learned_values_and_moments(backbone):
    delta = random_delta(backbone.spec, [3, 3], seed=1)
    param = delta.in_weight[0]
    state = {param: {"step": torch.tensor(5.0), "exp_avg": param.detach().clone() * 2,
                     "exp_avg_sq": param.detach().clone() ** 2}}
    old = delta.neurons(0).tolist()
    rows = {n: param[i].detach().clone() for i, n in enumerate(old)}
    new = torch.tensor(sorted([old[0], old[2], next(n for n in range(64) if n not in old)]))
    stats = delta.reselect([new, delta.neurons(1).clone()], state)
    assert stats == {"kept": [2, 3], "new": [1, 0]}
    for i, n in enumerate(new.tolist()):
        expect = rows.get(n, torch.zeros(backbone.spec.hidden_size))
        assert torch.equal(param[i], expect)
        assert torch.equal(state[param]["exp_avg"][i], expect * 2)
    assert float(state[param]["step"]) == 5.0
    with pytest.raises(KadaptError, match="re-selection has 2 neurons"):
        delta.reselect([new[:2], delta.neurons(1)])


def test_zero_neurons_in_a_layer(backbone, tmp_path):
    plugin = tiny_trelm(backbone, neurons_per_layer=[0, 4])
    assert plugin.num_parameters() == 4 * (2 * backbone.spec.hidden_size + 1)
    model = trelm_model(backbone, plugin)
    batch = trelm_batch(backbone, model)
    model.train()
    model.on_step(StepInfo(model, batch, 0, 0, None))
    model(batch).loss.backward()
    assert plugin.delta.in_weight[0].shape == (0, backbone.spec.hidden_size)
    saved = save_plugin(plugin, tmp_path / "p", backbone.fingerprint)
    loaded = load_plugin(saved, backbone).plugin
    assert loaded.delta.neurons(0).numel() == 0 and torch.equal(loaded.delta.neurons(1), plugin.delta.neurons(1))


def test_save_is_sparse_and_reload_is_bit_identical(backbone, tmp_path):
    plugin = tiny_trelm(backbone)
    plugin.delta.load_state_dict(random_delta(backbone.spec, [4, 4], seed=5).state_dict())
    model = trelm_model(backbone, plugin)
    batch = trelm_batch(backbone, model)
    model.train()
    model(batch)  # fills the memory bank
    model.eval()
    with torch.no_grad():
        feats = model.features(batch["input_ids"], batch["attention_mask"])
    out = save_plugin(plugin, tmp_path / "trelm", backbone.fingerprint, memory=plugin.extra_tensors())
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        keys = sorted(fh.keys())
        assert fh.get_tensor("delta.neurons_0").dtype == torch.int64
    assert keys == sorted([f"delta.{kind}.{i}" for kind in ("in_weight", "in_bias", "out_weight") for i in (0, 1)]
                          + ["delta.neurons_0", "delta.neurons_1", "selections"])
    loaded = load_plugin(out, backbone)
    assert set(loaded.memory) == {"slots", "local", "global_sum", "global_count", "neuron_age.0", "neuron_age.1",
                                  "word_slots", "word_local", "word_global_sum", "word_global_count",
                                  "word_count_keys", "word_counts"}  # + long-tail words (inject_long_tail)
    assert loaded.memory["slots"].numel() == len({r.text[r.subj_span[0]:r.subj_span[1]].lower() for r in RECORDS})
    model2 = KnowledgeModel(backbone, [loaded.plugin])
    with torch.no_grad():
        assert torch.equal(model2.features(batch["input_ids"], batch["attention_mask"]), feats)
    loaded.plugin.load_extra_tensors(loaded.memory)
    assert torch.equal(loaded.plugin.memory.local, plugin.memory.local)
    assert torch.equal(loaded.plugin.word_memory.local, plugin.word_memory.local)
    assert loaded.plugin.word_counts.counts == plugin.word_counts.counts and plugin.word_counts.counts


def test_feature_layout_with_outside_plugin(backbone):
    """[backbone_last ; K-Adapter (reads the UNMODIFIED pass) ; trelm_last (its own pass)]."""
    torch.manual_seed(0)
    kadapter = build_plugin("kadapter", {"layers": [0, 2], "adapter_size": 16, "num_attention_heads": 2,
                                         "intermediate_size": 32, "num_transformer_layers": 1}, backbone.spec).eval()
    trelm = tiny_trelm(backbone).eval()
    trelm.delta.load_state_dict(random_delta(backbone.spec, [4, 4], seed=2).state_dict())
    model = KnowledgeModel(backbone, [kadapter, trelm])
    hidden = backbone.spec.hidden_size
    assert model.feature_size == 3 * hidden
    ids, mask = encoded(backbone)
    with torch.no_grad():
        feats = model.features(ids, mask)
        states = backbone.encode(ids, mask, [0, 2])
        with trelm.delta.installed(backbone.model):
            modified = last_hidden(backbone.model, ids, mask)
    torch.testing.assert_close(feats[..., :hidden], states[2])
    torch.testing.assert_close(feats[..., hidden:2 * hidden], kadapter.adapt(states, mask))
    torch.testing.assert_close(feats[..., 2 * hidden:], modified, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(feats[..., 2 * hidden:], states[2], atol=1e-3)


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_other_architectures(tiny_backbone_dir, model_type):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir(model_type, num_layers=2, hidden_size=32,
                                                                num_heads=2, intermediate_size=64))
    delta = random_delta(backbone.spec, [3, 3])
    ids, mask = encoded(backbone)
    with torch.no_grad():
        plain = last_hidden(backbone.model, ids, mask)
        with delta.installed(backbone.model):
            assert not torch.allclose(last_hidden(backbone.model, ids, mask), plain, atol=1e-4)


def test_unknown_architecture_is_a_clear_error(backbone):
    fake = copy.deepcopy(backbone.model)
    fake.config.model_type = "gpt2"
    with pytest.raises(KadaptError, match="model_type 'gpt2'.*supported"):
        ffn_blocks(fake)


def test_bad_config_values(backbone):
    with pytest.raises(KadaptError, match="2 counts for a 2-layer|3 counts for a 2-layer"):
        build_plugin("trelm", {"neurons_per_layer": [1, 2, 3]}, backbone.spec)
    with pytest.raises(KadaptError, match="outside 0..64"):
        build_plugin("trelm", {"neurons_per_layer": [65]}, backbone.spec)
    with pytest.raises(KadaptError, match="memory_beta be >= 1"):
        build_plugin("trelm", {"memory_beta": 0.5}, backbone.spec)
    with pytest.raises(KadaptError, match="memory_window must be >= 0"):
        build_plugin("trelm", {"memory_window": -1}, backbone.spec)
    # it runs a pass of its own: no hidden-state cache, no joint run
    assert tiny_trelm(backbone).placement == "inside" and not tiny_trelm(backbone).reads_shared_states_only
