"""KnowledgeModel: the backbone travels with the model (it is outside the module tree)."""
from __future__ import annotations

import torch

from kadapt.core.family import build_plugin
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective


def test_to_and_dtype_casts_move_the_backbone_too(tiny_backbone):
    import copy

    backbone = copy.deepcopy(tiny_backbone)
    plugin = build_plugin("kadapter", {"adapter_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
                                       "num_transformer_layers": 1}, backbone.spec)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("relation_classification", model.feature_size, {"labels": ["a", "b"]})
    batch = backbone.tokenizer(["Paris is in France ."], return_tensors="pt")
    expected = model.features(batch["input_ids"], batch["attention_mask"]).double()
    assert model.double() is model
    assert backbone.dtype == torch.float64 and plugin.adapter_layers[0].down.weight.dtype == torch.float64
    assert model.head.classifier.weight.dtype == torch.float64
    got = model.features(batch["input_ids"], batch["attention_mask"])
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    model.to(torch.float32)
    assert backbone.dtype == torch.float32
    model.to("cpu")
    assert backbone.device.type == "cpu"
    assert not any(k.startswith("backbone") for k in model.state_dict())  # still outside the module tree
