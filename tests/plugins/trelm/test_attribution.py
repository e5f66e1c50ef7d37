"""Integrated-gradients attribution of FFN neurons (TRELM eq. 10–12) and knowledge-path selection."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.plugins.trelm.attribution import integrated_gradients, select_neurons
from kadapt.plugins.trelm.ffn import ffn_blocks


def score_of(readout: torch.Tensor):
    """A smooth probability from the last hidden state: sigmoid of a fixed projection at position 1."""
    return lambda hidden, batch: torch.sigmoid(hidden[:, 1] @ readout)


def hand_riemann_sum(model, batch, target, score, steps, layer) -> torch.Tensor:
    """Eq. 11 the slow way: one pass per k = 1..m, one row at a time, gradients summed by hand."""
    block = ffn_blocks(model)[layer]
    total = torch.zeros(block.input_linear.out_features)
    for row in range(batch["input_ids"].shape[0]):
        one = {k: v[row:row + 1] for k, v in batch.items()}
        captured = {}
        handle = block.activation_module.register_forward_hook(
            lambda m, a, o, captured=captured: captured.setdefault("v", o.detach()))
        with torch.no_grad():
            model(input_ids=one["input_ids"], attention_mask=one["attention_mask"])
        handle.remove()
        v = captured["v"]
        grad_sum = torch.zeros_like(v)
        for k in range(1, steps + 1):
            scaled = (k / steps * v).requires_grad_(True)
            where = target[row:row + 1, :, None]
            handle = block.activation_module.register_forward_hook(
                lambda m, a, o, where=where, scaled=scaled: torch.where(where, scaled, o))
            hidden = model(input_ids=one["input_ids"], attention_mask=one["attention_mask"]).last_hidden_state
            handle.remove()
            (grad,) = torch.autograd.grad(score(hidden, one).sum(), scaled)
            grad_sum += grad
        total += (v / steps * grad_sum)[0][target[row]].sum(0)
    return total


def test_batched_ig_matches_hand_computed_riemann_sum(backbone):
    torch.manual_seed(0)
    enc = backbone.tokenizer(["Barack Obama was born in Hawaii .", "Paris is the capital of France ."],
                             return_tensors="pt", padding=True)
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    target = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    target[0, 2] = target[1, 3] = target[1, 4] = True
    score = score_of(torch.randn(backbone.spec.hidden_size))
    batched = integrated_gradients(backbone.model, batch, target, score, steps=5)  # full passes
    from_layer = integrated_gradients(backbone, batch, target, score, steps=5)  # passes start at layer l
    assert len(batched) == len(from_layer) == backbone.spec.num_layers
    for layer in range(backbone.spec.num_layers):
        expected = hand_riemann_sum(backbone.model, batch, target, score, 5, layer)
        assert batched[layer].shape == (backbone.spec.intermediate_size,)
        torch.testing.assert_close(batched[layer], expected, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(from_layer[layer], expected, atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in backbone.model.parameters())


def test_ig_is_close_to_completeness_with_many_steps(backbone):
    """IG's completeness axiom: Σ_i Attr_i ≈ P(v) - P(0) for the layer (Riemann error shrinks with m)."""
    torch.manual_seed(1)
    enc = backbone.tokenizer(["Barack Obama was born in Hawaii ."], return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    target = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    target[0, 1] = True
    score = score_of(torch.randn(backbone.spec.hidden_size))
    block = ffn_blocks(backbone.model)[0].activation_module
    with torch.no_grad():
        full = score(backbone.model(**batch).last_hidden_state, batch)
        handle = block.register_forward_hook(lambda m, a, o: torch.where(target[..., None], torch.zeros_like(o), o))
        zero = score(backbone.model(**batch).last_hidden_state, batch)
        handle.remove()
    attr = integrated_gradients(backbone.model, batch, target, score, steps=200, layers=[0])[0]
    assert float(attr.sum()) == pytest.approx(float(full - zero), rel=0.02, abs=1e-5)


def test_select_neurons_top_k_threshold_and_empty_layers():
    scores = [torch.tensor([0.1, 5.0, -1.0, 3.0]), torch.tensor([0.2, 0.0, 0.1, 0.05])]
    top = select_neurons(scores, top_k=2)
    assert [t.tolist() for t in top] == [[1, 3], [0, 2]]
    assert [t.tolist() for t in select_neurons(scores, top_k=[0, 1])] == [[], [0]]
    # threshold relative to the highest score of all layers: the second layer gets zero neurons
    assert [t.tolist() for t in select_neurons(scores, threshold=0.5)] == [[1, 3], []]
    with pytest.raises(KadaptError, match="exactly one"):
        select_neurons(scores)
    with pytest.raises(KadaptError, match="top_k 5 outside 0..4"):
        select_neurons(scores, top_k=5)
    with pytest.raises(KadaptError, match="steps >= 1"):
        integrated_gradients(None, {}, torch.zeros(1, 1), lambda h, b: h, steps=0)


def test_gradient_x_activation_is_ig_with_one_step(backbone):
    """The cheap routing proxy = eq. 11 with m = 1, all layers from one pass."""
    from kadapt.plugins.trelm.attribution import gradient_x_activation, top_k_overlap

    torch.manual_seed(2)
    enc = backbone.tokenizer(["Barack Obama was born in Hawaii .", "Paris is the capital of France ."],
                             return_tensors="pt", padding=True)
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    target = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    target[0, 2] = target[1, 3] = True
    score = score_of(torch.randn(backbone.spec.hidden_size))
    proxy = gradient_x_activation(backbone, batch, target, score)
    one_step = integrated_gradients(backbone, batch, target, score, steps=1)
    for layer in range(backbone.spec.num_layers):
        torch.testing.assert_close(proxy[layer], one_step[layer], atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(proxy[layer], hand_riemann_sum(backbone.model, batch, target, score, 1, layer),
                                   atol=1e-7, rtol=1e-5)
    assert all(p.grad is None for p in backbone.model.parameters())
    assert top_k_overlap([torch.tensor([1, 2, 3, 4])], [torch.tensor([4, 5, 1, 9])]) == [0.5]
    assert top_k_overlap([torch.tensor([], dtype=torch.long)], [torch.tensor([], dtype=torch.long)]) == [1.0]
