"""Issue 19: a non-finite loss stops the run (last good checkpoint kept); JSON outputs never hold NaN."""
from __future__ import annotations

import functools
import json
import math

import pytest
import torch

import kadapt.runs.infuse
from kadapt.core.fileio import atomic_write_json, json_line
from kadapt.runs.checkpoint import latest_checkpoint
from kadapt.runs.loop import NonFiniteLossError, train
from kadapt.runs.recipe import recipe_from_dict
from kadapt.runs.run_log import MetricsLog, read_metrics
from run_kit import factual_recipe


def test_json_outputs_never_hold_nan(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"step": 1, "loss": float("nan"), "acc": float("inf"), "ok": 0.5})
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"step": 1, "loss": None, "acc": None, "ok": 0.5}
    atomic_write_json(tmp_path / "m.json", {"dev": {"loss": float("-inf"), "x": [1.0, float("nan")]}})
    assert json.loads((tmp_path / "m.json").read_text()) == {"dev": {"loss": None, "x": [1.0, None]}}
    assert json_line({"a": math.nan}) == '{"a": null}'
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["loss"] is None


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(world, backbone_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    recipe = recipe_from_dict(factual_recipe(world, backbone_dir, run_dir, batch_size=4, epochs=2, save_every=2))
    poisoned = {"at": 3}

    def on_step(step, loss):  # after step 3, poison one weight: the step-4 loss is NaN
        if step == poisoned["at"]:
            with torch.no_grad():
                next(p for p in model_ref[0].plugins[0].parameters()).fill_(float("nan"))

    model_ref = []
    real_train = train

    def spy(model, *args, **kw):
        model_ref.append(model)
        return real_train(model, *args, on_step=on_step, **kw)

    monkeypatch.setattr(kadapt.runs.infuse, "train", spy)
    with pytest.raises(NonFiniteLossError) as err:
        kadapt.runs.infuse.infuse(recipe)
    message = str(err.value)
    assert message.startswith(f"{run_dir}: training loss is nan at optimizer step 4;") and "\n" not in message
    assert "step-0000002" in message
    last = latest_checkpoint(run_dir / "checkpoints")
    assert last.name == "step-0000002"
    from kadapt.core.fileio import load_tensors

    tensors, _ = load_tensors(last / "trainable.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    assert not (run_dir / "plugin").exists()
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"] == [1, 2, 3]
