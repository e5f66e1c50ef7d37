"""The training loop: seeded data order, schedule, and bit-exact resume after an interruption."""
from __future__ import annotations

import functools
import json

import pytest
import torch

import kadapt.runs.infuse
from kadapt.runs.checkpoint import latest_checkpoint
from kadapt.core.fileio import load_tensors
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import recipe_from_dict
from kadapt.runs.loop import EpochSampler, linear_schedule, train
from run_kit import factual_recipe, train_losses


def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch():
    a, b = EpochSampler(20, seed=3), EpochSampler(20, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(20))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(EpochSampler(5, seed=3, shuffle=False)) == [0, 1, 2, 3, 4]


def test_linear_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, warmup=2, total=6)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    assert sched.get_last_lr()[0] == 0.0


class Interrupted(RuntimeError):
    pass


def _crash_at(step: int):
    def on_step(global_step: int, loss: float) -> None:
        if global_step == step:
            raise Interrupted(f"simulated kill at step {global_step}")
    return on_step


def _final_state(run_dir):
    """Plug-in weights, head weights and the last checkpoint's optimizer state, as tensors."""
    plugin, _ = load_tensors(run_dir / "plugin" / "model.safetensors")
    heads, _ = load_tensors(run_dir / "plugin" / "objective_heads.safetensors")
    last = latest_checkpoint(run_dir / "checkpoints")
    optim, _ = load_tensors(last / "optimizer.safetensors")
    return plugin, heads, optim, last


def _assert_bit_identical(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), what
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), f"{what}: {key} differs"


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_mid_epoch_is_bit_identical(world, backbone_dir, tmp_path, monkeypatch, grad_accum):
    """Kill in step 6 (last checkpoint: step 4, mid-epoch 2), resume: same weights and optimizer.

    24 examples, batch 4 → 6 batches per epoch; with grad_accum g, 6/g optimizer steps per epoch.
    Dropout is on (adapter and head), so this also checks that RNG states are restored.
    """
    kw = dict(batch_size=4, grad_accum=grad_accum, epochs=3, save_every=2, keep_checkpoints=2)
    full = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "full", **kw)))
    total = full.train.global_step
    assert total == 3 * 6 // grad_accum

    crash = 6
    run_dir = tmp_path / "resumed"
    recipe = recipe_from_dict(factual_recipe(world, backbone_dir, run_dir, **kw))
    monkeypatch.setattr(kadapt.runs.infuse, "train", functools.partial(train, on_step=_crash_at(crash)))
    with pytest.raises(Interrupted):
        infuse(recipe)
    monkeypatch.undo()
    last = latest_checkpoint(run_dir / "checkpoints")
    state = json.loads((last / "trainer_state.json").read_text())
    steps_per_epoch = 6 // grad_accum
    assert state["global_step"] == 4
    assert state["epoch"] == 4 // steps_per_epoch and state["batches_in_epoch"] == (4 % steps_per_epoch) * grad_accum
    assert state["batches_in_epoch"] > 0, "the test must resume mid-epoch"
    # an interrupted save (no trainer_state.json) at a later step must be ignored
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 6, "split": "tr')  # killed in the middle of a write
    partial = run_dir / "checkpoints" / "step-0000099"
    partial.mkdir()
    (partial / "trainable.safetensors").write_bytes(b"half a file")

    resumed = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, run_dir, **kw)), resume=True)
    assert resumed.train.global_step == total

    a_plugin, a_heads, a_optim, a_last = _final_state(full.run_dir)
    b_plugin, b_heads, b_optim, b_last = _final_state(run_dir)
    assert a_last.name == b_last.name == f"step-{total:07d}"
    _assert_bit_identical(a_plugin, b_plugin, "plug-in weights")
    _assert_bit_identical(a_heads, b_heads, "objective head")
    _assert_bit_identical(a_optim, b_optim, "optimizer state")
    assert json.loads((a_last / "scheduler.json").read_text()) == json.loads((b_last / "scheduler.json").read_text())
    # the killed run logged steps 1-5 (the last half-written); resuming from step 4 drops step 5
    # and logs it again: one curve, identical to the uninterrupted one
    full_losses = train_losses(full.run_dir)
    resumed_losses = train_losses(run_dir)
    assert full_losses == resumed_losses


def test_resume_without_checkpoint_starts_fresh(world, backbone_dir, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-0000003").mkdir(parents=True)  # interrupted save only
    recipe = recipe_from_dict(factual_recipe(world, backbone_dir, run_dir, epochs=1, batch_size=24))
    result = infuse(recipe, resume=True)
    assert result.train.global_step == 1


def test_train_rejects_empty_data_and_frozen_models(world, backbone_dir, tmp_path):
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.model import KnowledgeModel
    from kadapt.core.objective import build_objective
    from kadapt.runs.loop import TrainConfig

    model = KnowledgeModel(FrozenBackbone.from_pretrained(backbone_dir))
    model.head = build_objective("relation_classification", model.feature_size, {"labels": ["a", "b"]})
    with pytest.raises(ValueError, match="no training examples"):
        train(model, [], None, TrainConfig(cpu=True), tmp_path, pad_id=0)
    model.head.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        train(model, [{"input_ids": [1]}], None, TrainConfig(cpu=True), tmp_path, pad_id=0)


def test_max_steps_stops_mid_epoch_and_eval_every(world, backbone_dir, tmp_path):
    run_dir = tmp_path / "run"
    data = factual_recipe(world, backbone_dir, run_dir, batch_size=4, epochs=5, max_steps=4, eval_every=2)
    first = infuse(recipe_from_dict(data))
    assert first.train.global_step == 4  # max_steps wins over epochs; 6 batches per epoch
    assert [r["step"] for r in first.train.dev_history] == [2, 4]
    state = json.loads((latest_checkpoint(run_dir / "checkpoints") / "trainer_state.json").read_text())
    assert state == {"epoch": 0, "batches_in_epoch": 4, "global_step": 4}
    weights, _ = load_tensors(run_dir / "plugin" / "model.safetensors")
    again = infuse(recipe_from_dict(data), resume=True)  # nothing left to do
    assert again.train.global_step == 4
    _assert_bit_identical(weights, load_tensors(run_dir / "plugin" / "model.safetensors")[0], "plug-in")


def test_constant_schedule_keeps_the_peak_after_warm_up():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    scheduler = linear_schedule(optimizer, warmup=2, total=6, decay=False)
    seen = []
    for _ in range(6):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert seen == [0.25, 0.5, 0.5, 0.5, 0.5, 0.5]
    decaying = linear_schedule(torch.optim.SGD([param], lr=0.5), warmup=2, total=6)
    assert decaying.get_last_lr()[0] == 0.25
