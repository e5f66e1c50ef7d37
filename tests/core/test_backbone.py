"""FrozenBackbone: loading, freezing, layer selection, run_layers, fingerprint."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import FingerprintMismatchError, KadaptError


def _batch(backbone, texts=("Barack Obama was born in Hawaii .", "Paris .")):
    enc = backbone.tokenizer(list(texts), padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta"])
def test_loads_frozen_and_matches_hf_hidden_states(tiny_backbone_dir, model_type):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir(model_type))
    assert all(not p.requires_grad for p in backbone.model.parameters())
    ids, mask = _batch(backbone)
    ref = backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    states = backbone.encode(ids, mask, layers=[0, 2, backbone.spec.num_layers])
    assert sorted(states) == [0, 2, backbone.spec.num_layers]
    for index, tensor in states.items():
        torch.testing.assert_close(tensor, ref[index], rtol=0, atol=0)
        assert not tensor.requires_grad


def test_encode_stops_after_deepest_layer(tiny_backbone):
    tiny_backbone.verify_layers()  # the once-per-backbone self-check runs every layer; not counted here
    calls = []
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: calls.append(k))
             for k, layer in enumerate(tiny_backbone.model.encoder.layer)]
    try:
        ids, mask = _batch(tiny_backbone)
        tiny_backbone.encode(ids, mask, layers=[0, 2])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [0, 1]  # layers 3..L never ran


def test_encode_rejects_out_of_range_layers(tiny_backbone):
    ids, mask = _batch(tiny_backbone)
    with pytest.raises(KadaptError, match="outside 0..4"):
        tiny_backbone.encode(ids, mask, layers=[5])


def test_run_layers_reproduces_upper_half_with_gradients(tiny_backbone):
    ids, mask = _batch(tiny_backbone)
    L = tiny_backbone.spec.num_layers
    states = tiny_backbone.encode(ids, mask, layers=[2, L])
    h = states[2].clone().requires_grad_(True)
    out = tiny_backbone.run_layers(h, 2, L, mask)
    torch.testing.assert_close(out, states[L], rtol=0, atol=0)
    out.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.model.parameters())


def test_fingerprint_stable_and_sensitive(tiny_backbone_dir):
    a = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert"))
    b = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert"))
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint.weights_sha256) == 64 and len(a.fingerprint.tokenizer_sha256) == 64
    with torch.no_grad():
        b.model.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    b._fingerprint = None
    assert a.fingerprint.differences(b.fingerprint) and "weights_sha256" in a.fingerprint.differences(b.fingerprint)[0]
    with pytest.raises(FingerprintMismatchError, match="weights_sha256"):
        a.fingerprint.check_matches(b.fingerprint, "somewhere/kadapt_config.json")


def test_meta_backbone_has_sizes_but_no_weights():
    from kadapt.testing.tiny import roberta_large_config

    backbone = FrozenBackbone.from_config(roberta_large_config(), meta=True)
    assert backbone.is_meta
    assert backbone.spec.num_layers == 24 and backbone.spec.hidden_size == 1024
    assert backbone.fingerprint.weights_sha256 is None
