"""``training.gradient_checkpointing``: recomputing activations changes memory and time, never values.

``Backbone.run_layers`` (JAKET's LM2 re-entry, TRELM's attribution pass) and a tuned backbone's
whole-model pass must give bit-identical outputs and gradients with the switch on and off (dropout
included: the RNG state is replayed during recomputation).
"""
from __future__ import annotations

import copy

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.tuned_backbone import TunedBackbone

KW = {"num_layers": 3, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}


def _batch(backbone):
    enc = backbone.tokenizer(["Paris is the capital of France .", "Obama was born in Hawaii ."],
                             padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _run_layers_grad(backbone, on: bool):
    backbone.set_gradient_checkpointing(on)
    ids, mask = _batch(backbone)
    start = backbone.embed(ids).detach().requires_grad_(True)
    out = backbone.run_layers(start, 0, backbone.spec.num_layers, mask)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), start.grad


def test_run_layers_recomputes_with_identical_values_and_gradients(tiny_backbone_dir):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **KW))
    plain_out, plain_grad = _run_layers_grad(backbone, False)
    ckpt_out, ckpt_grad = _run_layers_grad(backbone, True)
    assert torch.equal(plain_out, ckpt_out)
    assert torch.equal(plain_grad, ckpt_grad)
    # the recomputation really happens: the layer runs once more in the backward pass
    calls = []
    handle = backbone.model.encoder.layer[1].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        _run_layers_grad(backbone, True)
        assert len(calls) == 2
        calls.clear()
        _run_layers_grad(backbone, False)
        assert len(calls) == 1
    finally:
        handle.remove()


def test_tuned_backbone_trains_identically_with_dropout(tiny_backbone_dir):
    base = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **KW))
    grads = {}
    for on in (False, True):
        tuned = TunedBackbone(base, "full")
        tuned.model.train()  # dropout active: recomputation must replay the same masks
        tuned.set_gradient_checkpointing(on)
        assert tuned.model.is_gradient_checkpointing is on
        ids, mask = _batch(tuned)
        torch.manual_seed(3)
        states = tuned.encode(ids, mask, [tuned.spec.num_layers])
        states[tuned.spec.num_layers].pow(2).mean().backward()
        grads[on] = {n: p.grad.clone() for n, p in tuned.model.named_parameters() if p.grad is not None}
    assert grads[False].keys() == grads[True].keys() and len(grads[True]) > 10
    assert all(torch.equal(grads[False][n], grads[True][n]) for n in grads[False])


def test_trelm_attribution_scores_are_identical_with_recomputation(tiny_backbone_dir):
    from kadapt.plugins.trelm.attribution import gradient_x_activation, integrated_gradients

    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **KW))
    ids, mask = _batch(backbone)
    rows = {"input_ids": ids, "attention_mask": mask}
    target = torch.zeros_like(mask)
    target[:, 1:3] = 1

    def score(hidden, batch):
        return hidden[:, 0].sum(-1).sigmoid()

    results = {}
    for on in (False, True):
        backbone.set_gradient_checkpointing(on)
        results[on] = (integrated_gradients(backbone, rows, target, score, steps=20),
                       gradient_x_activation(backbone, rows, target, score))
    for plain, recomputed in zip(results[False], results[True]):
        assert len(plain) == KW["num_layers"] and all(torch.equal(a, b) for a, b in zip(plain, recomputed))
        # the last layer's FFN at the target positions cannot reach the [CLS] output the score reads
        assert all(a.abs().sum() > 0 for a in plain[:-1]) and plain[-1].abs().sum() == 0
