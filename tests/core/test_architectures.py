"""The architecture registry: exact layered states per model type, the self-check, the full-forward
fallback for unknown types, and one-line refusals of what is not an encoder."""
from __future__ import annotations

import logging

import pytest
import torch

from kadapt.core import architectures
from kadapt.core.architectures import BertLike
from kadapt.core.backbone import BackboneSpec, FrozenBackbone
from kadapt.core.errors import ArchitectureError, LayerRunnerMismatchError
from kadapt.testing.tiny_archs import TINY_ARCHITECTURES, padded_batch, tiny_config, tiny_model


@pytest.mark.parametrize("case", TINY_ARCHITECTURES)
def test_layered_states_equal_the_models_own(case):
    backbone = FrozenBackbone(tiny_model(case))
    ids, mask = padded_batch(backbone.spec.vocab_size, backbone.model.config.pad_token_id)
    L = backbone.spec.num_layers
    states = backbone.encode(ids, mask, range(L + 1))
    with torch.no_grad():
        ref = backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for i in range(L + 1):
        torch.testing.assert_close(states[i], ref[i], rtol=0, atol=1e-5)
    mid = backbone.run_layers(states[1].clone().requires_grad_(True), 1, L, mask)
    torch.testing.assert_close(mid, ref[L], rtol=0, atol=1e-5)
    assert mid.requires_grad  # autograd through the frozen upper layers


@pytest.mark.parametrize("case", ["distilbert", "albert", "modernbert", "electra-small"])
def test_sdpa_and_eager_both_exact(case):
    for impl in ("eager", "sdpa"):
        if case == "electra-small" and impl == "sdpa":
            continue  # ELECTRA has no SDPA form in transformers
        backbone = FrozenBackbone(tiny_model(case, attn_implementation=impl))
        assert backbone.verify_layers(tolerance=1e-5) < 1e-5


def test_deberta_v2_conv_branch_is_exact():
    from transformers import AutoModel

    config = tiny_config("deberta-v2")
    config.conv_kernel_size, config.conv_act = 3, "gelu"
    torch.manual_seed(0)
    backbone = FrozenBackbone(AutoModel.from_config(config))
    assert backbone.model.encoder.conv is not None
    assert backbone.verify_layers(tolerance=1e-5) < 1e-5


def test_ffn_width_from_the_registry():
    assert BackboneSpec.from_hf_config(tiny_config("distilbert")).intermediate_size == 64  # hidden_dim, not 4*H
    assert BackboneSpec.from_hf_config(tiny_config("albert")).intermediate_size == 48
    assert BackboneSpec.from_hf_config(tiny_config("modernbert")).intermediate_size == 48


class _NoMask(BertLike):
    """A runner that forgets the mask (the kind of bug the self-check is for)."""

    def context(self, model, attention_mask, hidden):
        return {"mask": None}


class _NoPositionBias(architectures.MPNet):
    """MPNet without its relative position bias: the old generic runner's silent error (5.9e-4)."""

    def context(self, model, attention_mask, hidden):
        return {**super().context(model, attention_mask, hidden), "position_bias": None}


@pytest.mark.parametrize("case, broken", [("bert", _NoMask()), ("mpnet", _NoPositionBias())])
def test_self_check_catches_a_broken_layer_runner(monkeypatch, case, broken):
    model = tiny_model(case)
    monkeypatch.setitem(architectures._REGISTRY, case, broken)
    backbone = FrozenBackbone(model)
    ids, mask = padded_batch(backbone.spec.vocab_size, model.config.pad_token_id)
    with pytest.raises(LayerRunnerMismatchError,
                       match=rf"model_type '{case}'.*differs from the model's own forward") as err:
        backbone.encode(ids, mask, [1])
    assert "\n" not in str(err.value)
    with pytest.raises(LayerRunnerMismatchError):
        backbone.run_layers(torch.zeros(1, 3, 32), 0, 1, torch.ones(1, 3))


def test_self_check_runs_once_per_backbone(monkeypatch):
    backbone = FrozenBackbone(tiny_model("roberta"))
    calls = []
    original = backbone._check_batch
    monkeypatch.setattr(backbone, "_check_batch", lambda: calls.append(1) or original())
    ids, mask = padded_batch(backbone.spec.vocab_size, backbone.model.config.pad_token_id)
    for _ in range(3):
        backbone.encode(ids, mask, [2])
    backbone.run_layers(torch.zeros(1, 3, 32), 0, 2, torch.ones(1, 3))
    assert calls == [1]


def test_unknown_model_type_uses_the_full_forward_logged_once(monkeypatch, caplog):
    monkeypatch.delitem(architectures._REGISTRY, "mpnet")
    monkeypatch.setattr("kadapt.core.backbone._FALLBACK_LOGGED", set())
    backbone = FrozenBackbone(tiny_model("mpnet"))
    ids, mask = padded_batch(backbone.spec.vocab_size, backbone.model.config.pad_token_id)
    with caplog.at_level(logging.INFO, logger="kadapt.core.backbone"):
        states = backbone.encode(ids, mask, [0, 2])
        backbone.encode(ids, mask, [1])
    with torch.no_grad():
        ref = backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    torch.testing.assert_close(states[2], ref[2], rtol=0, atol=0)
    logged = [r.getMessage() for r in caplog.records if "full forward" in r.getMessage()]
    assert len(logged) == 1 and "'mpnet'" in logged[0]
    with pytest.raises(ArchitectureError, match="run_layers needs layers run one by one, which model_type 'mpnet'"):
        backbone.run_layers(states[0], 0, 2, mask)


def test_encoder_decoder_is_refused_in_one_line():
    from transformers import T5Config, T5Model

    model = T5Model(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    with pytest.raises(ArchitectureError, match=r"^model_type 't5' is an encoder-decoder model; .*encoder-only"):
        FrozenBackbone(model)


def test_decoder_only_is_refused_in_one_line():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    with pytest.raises(ArchitectureError, match=r"^model_type 'gpt2' is a decoder-only \(causal\) model"):
        FrozenBackbone(model)


def test_config_lacking_num_hidden_layers_is_refused_in_one_line():
    from transformers import PretrainedConfig

    config = PretrainedConfig(hidden_size=16, num_attention_heads=2, vocab_size=50)
    config.model_type = "mystery"
    with pytest.raises(ArchitectureError, match=r"^model_type 'mystery': config lacks num_hidden_layers$|"
                                                r"^model_type 'mystery': config lacks num_hidden_layers;"):
        BackboneSpec.from_hf_config(config)
    model = tiny_model("bert")
    del model.config.num_hidden_layers
    with pytest.raises(ArchitectureError, match="model_type 'bert': config lacks num_hidden_layers"):
        FrozenBackbone(model)


def test_refusal_names_the_capability_and_registration_extends():
    model = tiny_model("albert")
    assert architectures.refusal(model, "states") is None and architectures.refusal(model, "layers") is None
    assert "share FFN weights" in architectures.refusal(model, "ffn")
    assert architectures.refusal(tiny_model("albert-unshared"), "ffn") is None
    with pytest.raises(ValueError, match="capability must be one of"):
        architectures.refusal(model, "heads")
    assert isinstance(architectures.architecture("deberta-v2"), architectures.Deberta)
    assert architectures.architecture("gpt2") is None
