"""TRELM routing: per_batch / periodic schedules, the warm-up before a new read-out has trained, the
cheap attribution mode, and a fresh Adam start per newly selected neuron (exact, against a fresh AdamW)."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective
from kadapt.core.plugin import StepInfo
from kadapt.data.encoding import collate
from kadapt.data.records import RelationExample
from kadapt.plugins.trelm.attribution import gradient_x_activation, select_neurons
from kadapt.plugins.trelm.fresh_adam import FreshNeuronAdam
from kadapt.plugins.trelm.mask_adapter import SparseFFNDelta

RECORDS = [
    RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "r:1"),
    RelationExample("Paris is the capital of France .", (0, 5), (24, 30), "P1376", "r:2"),
]
LR, WD = 0.1, 0.01


def model_with(backbone, **config):
    base = {"neurons_per_layer": [4], "ig_steps": 3, "attribution_rows": 2, "memory_slots": 16}
    plugin = build_plugin("trelm", {**base, **config}, backbone.spec)
    torch.manual_seed(0)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("trelm_knowledge", model.feature_size, {"num_negatives": 3})
    model.head.bind_backbone(backbone)
    batch = collate([model.head.encode(r, backbone.tokenizer, 32) for r in RECORDS], backbone.tokenizer.pad_token_id)
    return model, plugin, batch


def selected_steps(model, plugin, batch, steps):
    for step in range(steps):
        model.on_step(StepInfo(model, batch, step, 0, None))
    return [r["step"] for r in plugin.selection_log]


def test_schedules_and_warm_up_of_a_new_readout(backbone):
    model, plugin, batch = model_with(backbone, routing_warmup_steps=3)
    assert not model.head.readout_trained  # the tiny backbone has no MLM head
    assert selected_steps(model, plugin, batch, 6) == [3, 4, 5]  # per_batch, none before the warm-up
    model, plugin, batch = model_with(backbone, routing="periodic", reselect_every=3, routing_warmup_steps=2)
    assert selected_steps(model, plugin, batch, 8) == [2, 3, 6]  # first eligible step, then every 3


def test_backbone_with_mlm_head_selects_at_step_zero(tiny_backbone_dir):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", num_layers=1, hidden_size=16, num_heads=2,
                                                                intermediate_size=32, with_mlm_head=True))
    model, plugin, batch = model_with(backbone, routing_warmup_steps=50)
    assert model.head.readout_trained
    assert selected_steps(model, plugin, batch, 2) == [0, 1]


def test_cheap_attribution_selects_the_top_of_gradient_x_activation(backbone):
    model, plugin, batch = model_with(backbone, attribution="grad_x_act", routing_warmup_steps=0)
    labels = batch["cka_labels"]
    torch.manual_seed(7)
    plugin.reselect(backbone, model.head, batch)
    torch.manual_seed(7)  # the same negatives, by hand
    rows = {k: v for k, v in batch.items() if torch.is_tensor(v) and v.ndim}
    rows["cka_negatives"] = model.head.sample_negatives(labels.clamp_min(0).flatten()).view(*labels.shape, -1)
    with plugin.delta.installed(backbone.model):  # the deltas are zero after the first selection's placeholders
        scores = gradient_x_activation(backbone, rows, labels != -100,
                                       lambda h, b: model.head.knowledge_probability(h, b))
    expected = select_neurons(scores, top_k=[4, 4])
    assert [plugin.delta.neurons(layer).tolist() for layer in range(2)] == [e.tolist() for e in expected]


def test_bad_routing_config_and_objective(backbone):
    with pytest.raises(KadaptError, match=r"trelm config: ig_steps must be >= 1 .*attribution: grad_x_act.*got 0"):
        build_plugin("trelm", {"ig_steps": 0}, backbone.spec)
    with pytest.raises(KadaptError, match="routing must be per_batch or periodic, got 'sometimes'"):
        build_plugin("trelm", {"routing": "sometimes"}, backbone.spec)
    with pytest.raises(KadaptError, match="attribution must be ig or grad_x_act, got 'lrp'"):
        build_plugin("trelm", {"attribution": "lrp"}, backbone.spec)
    plugin = build_plugin("trelm", {"neurons_per_layer": [2]}, backbone.spec)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("sentence_classification", model.feature_size, {"labels": ["a", "b"]})
    with pytest.raises(KadaptError, match="the model's objective is .* \\(objective.name: trelm_knowledge\\)"):
        model.on_step(StepInfo(model, {}, 0, 0, None))


def _grads(delta, gen):
    for p in delta.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def test_new_neuron_gets_an_exact_fresh_adam_start():
    """Neuron 5 selected after 5 steps: its row/column follow a brand-new AdamW step for step; the kept
    neuron follows the shared clock, bit-identical to an uncorrected optimizer."""
    deltas = [SparseFFNDelta(3, 8, [2]) for _ in range(2)]  # [corrected, plain]
    opts = [torch.optim.AdamW(d.parameters(), lr=LR, weight_decay=WD) for d in deltas]
    fresh = FreshNeuronAdam(deltas[0])
    fresh.attach(opts[0])
    for step in range(5):
        for d, opt in zip(deltas, opts):
            _grads(d, torch.Generator().manual_seed(step))
            opt.step()
    new = torch.tensor([0, 5])
    for d, opt in zip(deltas, opts):
        d.reselect([new], opt.state)
    fresh.remap(0, torch.tensor([0, 1]), new)
    assert fresh.ages[0].tolist() == [5, 0]
    ref = [torch.zeros(1, 3, requires_grad=True), torch.zeros(1, requires_grad=True), torch.zeros(3, 1, requires_grad=True)]
    ref_opt = torch.optim.AdamW(ref, lr=LR, weight_decay=WD)
    for step in range(5, 9):
        for d, opt in zip(deltas, opts):
            _grads(d, torch.Generator().manual_seed(step))
            opt.step()
        ref[0].grad, ref[1].grad = deltas[0].in_weight[0].grad[1:2], deltas[0].in_bias[0].grad[1:2]
        ref[2].grad = deltas[0].out_weight[0].grad[:, 1:2]
        ref_opt.step()
        if step == 5:  # the uncorrected first update, by formula: (1-β1)/(1-β1^6) / sqrt((1-β2)/(1-β2^6)) × fresh
            ratio = float(deltas[1].in_bias[0][1] / ref[1][0])
            assert ratio == pytest.approx(0.1 / (1 - 0.9 ** 6) / ((0.001 / (1 - 0.999 ** 6)) ** 0.5), rel=1e-4)
    torch.testing.assert_close(deltas[0].in_weight[0][1:2], ref[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(deltas[0].in_bias[0][1:2], ref[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(deltas[0].out_weight[0][:, 1:2], ref[2], rtol=1e-5, atol=1e-7)
    assert torch.equal(deltas[0].in_weight[0][0], deltas[1].in_weight[0][0])  # the kept neuron: untouched
    assert fresh.ages[0].tolist() == [9, 4]
    restored = FreshNeuronAdam(SparseFFNDelta(3, 8, [2]))
    restored.load_tensors(fresh.tensors())
    assert restored.ages[0].tolist() == [9, 4]


def test_neuron_clock_runs_from_the_first_step_and_after_a_resume(backbone):
    """Ages count optimizer steps during the warm-up and on steps without a selection, also when a resumed
    run brings a new optimizer object: the placeholder neurons kept at the first selection are not 'young'."""
    model, plugin, batch = model_with(backbone, routing="periodic", reselect_every=0, routing_warmup_steps=2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(3):
        model.on_step(StepInfo(model, batch, step, 0, optimizer))
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert [r["step"] for r in plugin.selection_log] == [2]
    kept = [set(plugin.delta.neurons(layer).tolist()) & set(range(4)) for layer in range(2)]
    expect = [[3 if n in kept[layer] else 1 for n in plugin.delta.neurons(layer).tolist()] for layer in range(2)]
    assert [ages.tolist() for ages in plugin.fresh.ages] == expect  # kept placeholders: 3 steps; new ones: 1
    resumed = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    resumed.load_state_dict(optimizer.state_dict())
    model.on_step(StepInfo(model, batch, 3, 0, resumed))  # not a selection step
    model(batch).loss.backward()
    resumed.step()
    assert [ages.tolist() for ages in plugin.fresh.ages] == [[a + 1 for a in layer] for layer in expect]
