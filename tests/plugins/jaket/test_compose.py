"""JAKET as a re-entrant plug-in of KnowledgeModel: feature layout, mentions, save/load, frozen backbone."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.core.backbone import hash_state_dict
from kadapt.core.model import KnowledgeModel
from kadapt.core.errors import KadaptError
from kadapt.kg import read_kg
from kadapt.store.plugin_dir import load_plugin, save_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.jaket.kg_context import attach_kg, load_memory
from kadapt.plugins.jaket.pretraining import build_memory

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"


@pytest.fixture()
def jaket_model(tiny_backbone, tmp_path):
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"fanouts": [3, 3]}, tiny_backbone.spec)
    kadapter = build_plugin("kadapter", {"layers": [1], "num_transformer_layers": 1}, tiny_backbone.spec)
    memory = build_memory(tiny_backbone, read_kg(TINY_KG), plugin)
    save_plugin(plugin, tmp_path / "jaket", tiny_backbone.fingerprint, memory=memory.to_tensors())
    model = KnowledgeModel(tiny_backbone, [kadapter, plugin]).eval()
    attach_kg(model, TINY_KG, tmp_path / "jaket" / "memory.safetensors")
    return model, tmp_path / "jaket"


def _inputs(backbone):
    ids = torch.randint(5, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    token_entities = torch.full_like(ids, -1)
    token_entities[0, 2:4], token_entities[1, 5] = 0, 7
    return ids, mask, token_entities


def test_features_are_backbone_outside_then_jaket_lm2(jaket_model, tiny_backbone):
    model, _ = jaket_model
    before = hash_state_dict(tiny_backbone.model.state_dict())
    ids, mask, token_entities = _inputs(tiny_backbone)
    h = tiny_backbone.spec.hidden_size
    feats = model.features(ids, mask, batch={"token_entities": token_entities})
    kadapter = model.plugins[0]
    assert model.feature_size == h + kadapter.output_size + h and feats.shape == (2, 9, model.feature_size)
    states = tiny_backbone.encode(ids, mask, model.required_layers())
    last = states[tiny_backbone.spec.num_layers]
    assert torch.equal(feats[..., :h], last)
    assert torch.equal(feats[..., h:h + kadapter.output_size], kadapter.adapt(states, mask))
    lm2 = feats[..., h + kadapter.output_size:]
    assert not torch.allclose(lm2[0, 2], last[0, 2])  # the mention token carries knowledge
    # without linked mentions the JAKET block is exactly the backbone's last state
    plain = model.features(ids, mask, batch={"token_entities": torch.full_like(ids, -1)})
    assert torch.equal(plain[..., h + kadapter.output_size:], last)
    assert torch.equal(model.features(ids, mask)[..., -h:], last)
    assert hash_state_dict(tiny_backbone.model.state_dict()) == before
    assert not any(p.grad is not None for p in tiny_backbone.model.parameters())


def test_features_bit_identical_after_save_and_load(jaket_model, tiny_backbone):
    model, jaket_dir = jaket_model
    ids, mask, token_entities = _inputs(tiny_backbone)
    batch = {"token_entities": token_entities}
    first = model.features(ids, mask, batch=batch)
    loaded = load_plugin(jaket_dir, tiny_backbone).plugin
    again = KnowledgeModel(tiny_backbone, [model.plugins[0], loaded]).eval()
    attach_kg(again, TINY_KG, jaket_dir / "memory.safetensors")
    assert torch.equal(again.features(ids, mask, batch=batch), first)
    assert torch.equal(model.features(ids, mask, batch=batch), first)  # evaluation reads full neighbourhoods


def test_training_mode_samples_and_gradients_reach_the_gat(jaket_model, tiny_backbone):
    model, _ = jaket_model
    jaket = model.plugins[1]
    model.train()
    jaket.train()
    ids, mask, token_entities = _inputs(tiny_backbone)
    model.features(ids, mask, batch={"token_entities": token_entities}).sum().backward()
    assert jaket.gat.layers[0].weight.weight.grad is not None
    assert all(p.grad is None for p in tiny_backbone.model.parameters())


def test_mentions_without_a_kg_and_bad_ids_fail_clearly(tiny_backbone, tmp_path):
    plugin = build_plugin("jaket", {}, tiny_backbone.spec)
    model = KnowledgeModel(tiny_backbone, [plugin]).eval()
    ids, mask, token_entities = _inputs(tiny_backbone)
    assert torch.equal(model.features(ids, mask)[..., -tiny_backbone.spec.hidden_size:],
                       tiny_backbone.encode(ids, mask, [tiny_backbone.spec.num_layers])[tiny_backbone.spec.num_layers])
    with pytest.raises(KadaptError, match="no knowledge graph attached"):
        model.features(ids, mask, batch={"token_entities": token_entities})
    memory = build_memory(tiny_backbone, read_kg(TINY_KG), plugin)
    from kadapt.core.fileio import save_tensors

    save_tensors(tmp_path / "m.safetensors", memory.to_tensors())
    attach_kg(model, TINY_KG, tmp_path / "m.safetensors")
    with pytest.raises(KadaptError, match="attached KG .* has 12"):
        model.features(ids, mask, batch={"token_entities": token_entities.masked_fill(token_entities == 7, 99)})
    with pytest.raises(KadaptError, match="shape of input_ids"):
        model.features(ids, mask, batch={"token_entities": token_entities[:, :4]})
    small = load_memory(tmp_path / "m.safetensors", plugin)
    small.entities = small.entities[:5]
    from kadapt.plugins.jaket.kg_context import make_context

    with pytest.raises(KadaptError, match="recompute it with kadapt kg-memory"):
        make_context(read_kg(TINY_KG), small, plugin)
    with pytest.raises(KadaptError, match="has none"):
        attach_kg(KnowledgeModel(tiny_backbone, []), TINY_KG)


def test_gat_gradient_reaches_it_only_through_the_frozen_upper_layers(jaket_model, tiny_backbone):
    """d loss / d GAT = J_merge^T · J_LM2^T · g: the model's gradient equals the chain rule taken by hand
    through the frozen upper layers (LM2), only mention tokens pass it on, and skipping LM2 changes it."""
    model, _ = jaket_model
    jaket, kadapter = model.plugins[1], model.plugins[0]
    h, top, lm1 = tiny_backbone.spec.hidden_size, tiny_backbone.spec.num_layers, jaket.lm1_layer
    assert 0 < lm1 < top and all(not p.requires_grad for p in tiny_backbone.model.parameters())
    ids, mask, token_entities = _inputs(tiny_backbone)
    upstream = torch.randn(2, 9, h, generator=torch.Generator().manual_seed(7))
    params = list(jaket.gat.parameters()) + list(jaket.merge_norm.parameters())
    feats = model.features(ids, mask, batch={"token_entities": token_entities})  # eval: full neighbourhoods
    assert feats.shape[-1] == 2 * h + kadapter.output_size
    from_model = torch.autograd.grad((feats[..., -h:] * upstream).sum(), params)

    linked = token_entities >= 0
    roots = torch.unique(token_entities[linked])
    context = jaket.require_kg()
    knowledge = jaket.knowledge(context.memory.entities, context.memory.relations, context.subgraph(roots, False))
    rows = torch.where(linked, torch.searchsorted(roots, token_entities.clamp(min=0)), -1)
    lm1_states = tiny_backbone.encode(ids, mask, [lm1])[lm1]
    merged = jaket.merge(lm1_states, rows, knowledge)
    leaf = merged.detach().requires_grad_()
    (through_lm2,) = torch.autograd.grad((tiny_backbone.run_layers(leaf, lm1, top, mask) * upstream).sum(), leaf)
    by_hand = torch.autograd.grad(merged, params, grad_outputs=through_lm2, retain_graph=True)
    for got, want in zip(from_model, by_hand):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in by_hand)
    # only mention tokens carry it: the LM2 gradient at other tokens contributes nothing to the GAT
    mention_only = torch.autograd.grad(merged, params, grad_outputs=through_lm2 * linked[..., None], retain_graph=True)
    for got, want in zip(mention_only, by_hand):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # the upper layers are in the path: with LM2 skipped the GAT would get another gradient
    skipped = torch.autograd.grad(merged, params, grad_outputs=upstream)
    assert not torch.allclose(skipped[0], from_model[0], rtol=1e-3, atol=1e-6)
    assert all(p.grad is None for p in tiny_backbone.model.parameters())
