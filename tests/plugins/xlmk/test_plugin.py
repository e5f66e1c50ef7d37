"""XLM-K plug-in: sizes, `plugin-info`, infusion end to end, the queue in memory.safetensors and on resume."""
from __future__ import annotations

import functools

import pytest
import torch
from run_kit import train_losses
from transformers import XLMRobertaConfig
from xlmk_kit import XLMR_KW, build_backbone, xlmk_recipe

import kadapt.runs.infuse
from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.runs.checkpoint import latest_checkpoint
from kadapt.cli.app import main
from kadapt.core.fileio import load_tensors
from kadapt.runs.infuse import infuse
from kadapt.store.plugin_dir import load_plugin
from kadapt.core.family import build_plugin
from kadapt.runs.recipe import recipe_from_dict
from kadapt.runs.loop import train


def _xlmr(hidden: int, layers: int) -> XLMRobertaConfig:
    return XLMRobertaConfig(vocab_size=250002, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=hidden // 64, intermediate_size=4 * hidden,
                            max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)


@pytest.mark.parametrize("hidden,layers,params,required", [
    (768, 12, 46_070_784, [0, 5, 11]),    # xlm-roberta-base: 3 × 15,356,928
    (1024, 24, 47_251_200, [0, 11, 23]),  # xlm-roberta-large: as K-Adapter on RoBERTa-large
])
def test_plugin_info_kind_xlmk_on_config_only(tmp_path, capsys, hidden, layers, params, required):
    import json

    _xlmr(hidden, layers).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert main(["plugin-info", "--kind", "xlmk", "--backbone", str(tmp_path), "--meta", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "xlmk" and info["placement"] == "outside"
    assert info["parameters"] == params and info["required_layers"] == required and info["output_size"] == hidden
    assert info["backbone"]["model_type"] == "xlm-roberta"


def test_plugin_is_kadapter_body_with_its_own_kind(tmp_path):
    fb = FrozenBackbone.from_config(_xlmr(768, 12), meta=True)
    with torch.device("meta"):
        plugin = build_plugin("xlmk", {"layers": [11], "adapter_size": 256, "num_attention_heads": 4}, fb.spec)
    assert plugin.kind == "xlmk" and plugin.required_layers() == (11,)
    assert plugin.num_parameters() == (768 * 256 + 256) + (256 * 768 + 768) + 2 * (4 * (256 * 256 + 256) + 2 * 256 * 3072
                                                                   + 3072 + 256 + 4 * 256)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return build_backbone(tmp_path_factory.mktemp("xlmr"))


@pytest.fixture(scope="module")
def infused(backbone_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("xlmk-run")
    before = hash_state_dict(FrozenBackbone.from_pretrained(backbone_dir).model.state_dict())
    result = infuse(recipe_from_dict(xlmk_recipe(backbone_dir, run, epochs=4)))
    return result, before


def test_infusion_end_to_end_loss_down_backbone_untouched(infused, backbone_dir, tmp_path):
    result, before = infused
    assert len(train_losses(result.run_dir)) == 12  # 24 records / batch 8 = 3 steps × 4 epochs
    # with a queue the candidate list grows over the first steps (so does the loss); with in-batch
    # candidates only the loss is comparable across steps and must fall
    plain = infuse(recipe_from_dict(xlmk_recipe(backbone_dir, tmp_path / "plain", queue_size=0, epochs=20, lr=1e-2)))
    losses = train_losses(plain.run_dir)
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    assert hash_state_dict(backbone.model.state_dict()) == before
    loaded = load_plugin(result.plugin_dir, backbone)
    assert loaded.kind == "xlmk" and loaded.record["objectives"][0]["name"] == "xlmk_contrastive"


def test_queue_is_saved_in_memory_safetensors_not_in_heads(infused, backbone_dir):
    result, _ = infused
    loaded = load_plugin(result.plugin_dir, FrozenBackbone.from_pretrained(backbone_dir))
    assert sorted(loaded.memory) == sorted(f"xlmk_contrastive.{q}_queue.{b}" for q in ("entity", "object")
                                           for b in ("filled", "ids", "keys", "ptr"))
    assert not any("_queue." in k for k in loaded.heads)
    # limit 24 of the interleaved records = 14 mentions + 10 triples per epoch; 4 epochs through 16 slots
    for task, per_epoch in (("entity", 14), ("object", 10)):
        assert int(loaded.memory[f"xlmk_contrastive.{task}_queue.filled"]) == 16
        assert int(loaded.memory[f"xlmk_contrastive.{task}_queue.ptr"]) == 4 * per_epoch % 16
    # the same queue as the last training checkpoint holds
    ckpt, _ = load_tensors(latest_checkpoint(result.run_dir / "checkpoints") / "trainable.safetensors")
    for key, value in loaded.memory.items():
        assert torch.equal(ckpt["head." + key.split(".", 1)[1]], value)


class Interrupted(RuntimeError):
    pass


def _crash_at(step: int):
    def on_step(global_step: int, loss: float) -> None:
        if global_step == step:
            raise Interrupted(f"simulated kill at step {global_step}")
    return on_step


def test_queue_survives_kill_and_resume_bit_identically(backbone_dir, tmp_path, monkeypatch):
    kw = {"epochs": 2, "save_every": 2}
    full = infuse(recipe_from_dict(xlmk_recipe(backbone_dir, tmp_path / "full", **kw)))
    run = tmp_path / "resumed"
    monkeypatch.setattr(kadapt.runs.infuse, "train", functools.partial(train, on_step=_crash_at(5)))
    with pytest.raises(Interrupted):
        infuse(recipe_from_dict(xlmk_recipe(backbone_dir, run, **kw)))
    monkeypatch.undo()
    state, _ = load_tensors(latest_checkpoint(run / "checkpoints") / "trainable.safetensors")
    assert int(state["head.entity_queue.filled"]) == 16  # the checkpoint (step 4) holds a non-empty queue
    resumed = infuse(recipe_from_dict(xlmk_recipe(backbone_dir, run, **kw)), resume=True)
    assert train_losses(full.run_dir) == train_losses(resumed.run_dir)
    a, _ = load_tensors(latest_checkpoint(full.run_dir / "checkpoints") / "trainable.safetensors")
    b, _ = load_tensors(latest_checkpoint(run / "checkpoints") / "trainable.safetensors")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    ma, _ = load_tensors(full.plugin_dir / "memory.safetensors")
    mb, _ = load_tensors(resumed.plugin_dir / "memory.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_mlm_term_through_a_recipe_resumes_bit_identically(backbone_dir, tmp_path, monkeypatch):
    def recipe(out):
        r = xlmk_recipe(backbone_dir, out, epochs=2, save_every=2)
        r["objective"]["config"]["mlm_weight"] = 0.5
        return recipe_from_dict(r)

    full = infuse(recipe(tmp_path / "full"))
    run = tmp_path / "resumed"
    monkeypatch.setattr(kadapt.runs.infuse, "train", functools.partial(train, on_step=_crash_at(5)))
    with pytest.raises(Interrupted):
        infuse(recipe(run))
    monkeypatch.undo()
    resumed = infuse(recipe(run), resume=True)
    assert train_losses(full.run_dir) == train_losses(resumed.run_dir)  # the masks are drawn again exactly
    heads, _ = load_tensors(full.plugin_dir / "objective_heads.safetensors")
    assert heads["xlmk_contrastive.mlm_head.bias"].shape == (XLMR_KW["vocab_size"],) and heads["xlmk_contrastive.mlm_head.transform.weight"].shape == (32, 64)
    plain = infuse(recipe_from_dict(xlmk_recipe(backbone_dir, tmp_path / "plain", epochs=2, save_every=2)))
    assert train_losses(plain.run_dir) != train_losses(full.run_dir)
