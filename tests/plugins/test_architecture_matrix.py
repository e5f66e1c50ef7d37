"""Every supported encoder architecture x every family: exact states (<= 1e-5, fp32, padded batch) against
the model's own forward, or the documented one-line refusal at build time (KnowledgeModel)."""
from __future__ import annotations

import pytest
import torch

import kadapt.plugins  # noqa: F401  (registers the families)
from kadapt.core.architectures import architecture
from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import ArchitectureError
from kadapt.core.family import build_plugin
from kadapt.core.model import KnowledgeModel
from kadapt.testing.tiny_archs import TINY_ARCHITECTURES, padded_batch, tiny_model

FAMILIES = ("kadapter", "xlmk", "trelm", "jaket")
#: the documented refusals (README table): (case, family) -> part of the one-line error
REFUSED = {
    ("albert", "trelm"): "model_type 'albert' cannot offer exactly: its layers share FFN weights",
    ("modernbert", "trelm"): "model_type 'modernbert' cannot offer exactly: its FFN is gated",
}
ATOL = 1e-5


def _backbone(case):
    return FrozenBackbone(tiny_model(case), name=case)


def _reference_states(backbone, ids, mask):
    with torch.no_grad():
        return backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


def _plugin(kind, backbone):
    L = backbone.spec.num_layers
    if kind in ("kadapter", "xlmk"):
        config = {"layers": [0, 1, L], "adapter_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
                  "dropout": 0.0, "init_std": 0.2}
    elif kind == "trelm":
        config = {"neurons_per_layer": [4]}
    else:
        config = {"lm1_layers": 1}
    torch.manual_seed(0)
    return build_plugin(kind, config, backbone.spec).eval()


def _check_outside(model, plugin, backbone, ids, mask, ref):
    feats = model.features(ids, mask)
    expected = torch.cat([ref[-1], plugin.adapt(dict(enumerate(ref)), mask)], dim=-1)
    torch.testing.assert_close(feats, expected, rtol=0, atol=ATOL)


def _check_trelm(plugin, backbone, ids, mask):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in range(plugin.delta.num_layers):
            for p in (plugin.delta.in_weight[layer], plugin.delta.in_bias[layer], plugin.delta.out_weight[layer]):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    out = plugin.inside_features(backbone, ids, mask)
    with plugin.delta.installed(backbone.model):
        reference = _reference_states(backbone, ids, mask)[-1]
    assert not torch.allclose(reference, _reference_states(backbone, ids, mask)[-1], atol=1e-3)  # delta acts
    torch.testing.assert_close(out, reference, rtol=0, atol=ATOL)


def _check_jaket(plugin, backbone, ids, mask, ref):
    """LM2 over merged states == the model's own forward with layer lm1's output replaced by them."""
    lm1 = plugin.lm1_layer
    rows = torch.full_like(ids, -1)
    rows[0, 1:3], rows[1, 2] = 0, 1
    knowledge = torch.randn(2, backbone.spec.hidden_size, generator=torch.Generator().manual_seed(2))
    states = dict(enumerate(ref))
    out = plugin.merge_and_run_lm2(states, mask, backbone=backbone, token_entities=rows, knowledge=knowledge)
    merged = plugin.merge(ref[lm1], rows, knowledge)
    calls = []

    def replace(module, args, output):  # first call only: ALBERT's shared group runs once per layer
        calls.append(1)
        return (merged, *output[1:]) if len(calls) == 1 else output

    layer = architecture(backbone.spec.model_type).layers(backbone.model)[lm1 - 1]
    handle = layer.register_forward_hook(replace)
    try:
        reference = _reference_states(backbone, ids, mask)[-1]
    finally:
        handle.remove()
    assert not torch.allclose(reference, ref[-1], atol=1e-3)  # the knowledge changed LM2's output
    torch.testing.assert_close(out, reference, rtol=0, atol=ATOL)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", TINY_ARCHITECTURES)
def test_family_on_architecture_is_exact_or_refused(case, family):
    backbone = _backbone(case)
    ids, mask = padded_batch(backbone.spec.vocab_size, backbone.model.config.pad_token_id)
    assert (mask == 0).any()
    plugin = _plugin(family, backbone)
    if (case, family) in REFUSED:
        with pytest.raises(ArchitectureError, match=REFUSED[case, family]) as err:
            KnowledgeModel(backbone, [plugin])
        assert "\n" not in str(err.value)
        return
    model = KnowledgeModel(backbone, [plugin]).eval()
    ref = _reference_states(backbone, ids, mask)
    if family in ("kadapter", "xlmk"):
        _check_outside(model, plugin, backbone, ids, mask, ref)
    elif family == "trelm":
        _check_trelm(plugin, backbone, ids, mask)
    else:
        _check_jaket(plugin, backbone, ids, mask, ref)


def test_jaket_pretraining_model_refuses_an_unrunnable_backbone(monkeypatch):
    from kadapt.core import architectures
    from kadapt.plugins.jaket.pretraining import JaketPretrainingModel

    monkeypatch.delitem(architectures._REGISTRY, "mpnet")  # an encoder kadapt cannot run layer by layer
    backbone = _backbone("mpnet")
    plugin = _plugin("jaket", backbone)
    with pytest.raises(ArchitectureError, match="jaket plug-in 'jaket' needs layers run one by one, which "
                                                "model_type 'mpnet' cannot offer exactly: kadapt has no layer runner"):
        JaketPretrainingModel(backbone, plugin, None, None, None)
    with pytest.raises(ArchitectureError, match="model_type 'mpnet'"):
        KnowledgeModel(backbone, [plugin])
    KnowledgeModel(backbone, [_plugin("kadapter", backbone)])  # states only: the full-forward path serves


@pytest.mark.parametrize("case", [c for c in TINY_ARCHITECTURES if (c, "trelm") not in REFUSED])
def test_trelm_attribution_layered_equals_full_forward(case):
    """TRELM's knowledge-path attribution through the backbone (cached lower states + run_layers) gives
    the scores of the same integrals over the raw model's full forward."""
    from kadapt.plugins.trelm.attribution import integrated_gradients

    backbone = _backbone(case)
    ids, mask = padded_batch(backbone.spec.vocab_size, backbone.model.config.pad_token_id)
    target = torch.zeros_like(ids, dtype=torch.bool)
    target[:, 1] = True
    batch = {"input_ids": ids, "attention_mask": mask}

    probe = torch.randn(backbone.spec.hidden_size, generator=torch.Generator().manual_seed(3))

    def score(hidden, _batch):  # a projection (a plain sum of a LayerNorm output has no gradient)
        return hidden[:, 1] @ probe

    layered = integrated_gradients(backbone, batch, target, score, steps=3)
    full = integrated_gradients(backbone.model, batch, target, score, steps=3)
    assert [s.numel() for s in layered] == [backbone.spec.intermediate_size] * backbone.spec.num_layers
    assert all(float(s.abs().sum()) > 0 for s in layered)
    for a, b in zip(layered, full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
