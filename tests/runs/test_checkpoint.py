"""Training checkpoints: no pickle anywhere, exact state round trips, interrupted saves ignored."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

import kadapt.runs.checkpoint as ckpt
from kadapt.runs.checkpoint import (STATE_FILE, latest_checkpoint, load_checkpoint, optimizer_from_files,
                               optimizer_to_files, prune_checkpoints, rng_from_files, rng_to_files,
                               save_checkpoint)
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import recipe_from_dict
from run_kit import factual_recipe


def _adam_after_steps(steps: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    for _ in range(steps):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def test_run_checkpoints_hold_no_pickle(world, backbone_dir, tmp_path):
    run = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "run", epochs=1, save_every=1)))
    folders = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert folders and all((f / STATE_FILE).exists() for f in folders)
    for folder in folders:
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(["optimizer.json", "optimizer.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
                                "scheduler.json", STATE_FILE, "trainable.safetensors"])
        for path in folder.iterdir():
            data = path.read_bytes()
            assert not data.startswith(b"\x80"), f"{path} looks like a pickle"
            assert b"PK\x03\x04" not in data[:4], f"{path} looks like a torch zip archive"
            if path.suffix == ".json":
                json.loads(data)
            else:
                with safe_open(path, "pt") as handle:  # parses the whole header, tensors are plain
                    assert all(handle.get_tensor(k) is not None for k in handle.keys())
    plugin_files = sorted(p.name for p in run.plugin_dir.iterdir())
    assert plugin_files == ["README.md", "kadapt_config.json", "manifest.json", "model.safetensors", "objective_heads.safetensors"]
    assert not list((tmp_path / "run").rglob("*.bin")) and not list((tmp_path / "run").rglob("*.pt"))


def test_optimizer_and_scheduler_round_trip_exactly(tmp_path):
    model, opt, sched = _adam_after_steps()
    save_checkpoint(tmp_path / "step-0000003", trainable=model.state_dict(), optimizer=opt, scheduler=sched,
                    trainer_state={"epoch": 0, "batches_in_epoch": 3, "global_step": 3})
    model2, opt2, sched2 = _adam_after_steps(0)
    state = load_checkpoint(tmp_path / "step-0000003", module=model2, optimizer=opt2, scheduler=sched2)
    assert state == {"epoch": 0, "batches_in_epoch": 3, "global_step": 3}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    a, b = opt.state_dict(), opt2.state_dict()
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            assert torch.equal(value, b["state"][pid][key]), (pid, key)
    assert [g["lr"] for g in a["param_groups"]] == [g["lr"] for g in b["param_groups"]]
    assert sched.state_dict()["last_epoch"] == sched2.state_dict()["last_epoch"] == 3
    # continuing both gives the same parameters
    x = torch.randn(2, 4)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).sum().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_optimizer_files_split_tensors_from_json():
    _, opt, _ = _adam_after_steps()
    tensors, meta = optimizer_to_files(opt)
    assert all(torch.is_tensor(t) for t in tensors.values())
    json.dumps(meta)  # everything else is plain JSON
    _, fresh, _ = _adam_after_steps(0)
    optimizer_from_files(fresh, tensors, json.loads(json.dumps(meta)))
    assert fresh.state_dict()["param_groups"][0]["betas"] == [0.8, 0.95] or \
        tuple(fresh.state_dict()["param_groups"][0]["betas"]) == (0.8, 0.95)


def test_rng_states_round_trip():
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    tensors, meta = rng_to_files()
    meta = json.loads(json.dumps(meta))
    first = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    rng_from_files(tensors, meta)
    second = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]


def _fake_checkpoint(folder, complete=True):
    folder.mkdir(parents=True)
    (folder / "trainable.safetensors").write_bytes(b"")
    if complete:
        (folder / STATE_FILE).write_text("{}")


def test_latest_checkpoint_ignores_interrupted_saves(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    _fake_checkpoint(tmp_path / "step-0000002")
    _fake_checkpoint(tmp_path / "step-0000010")
    _fake_checkpoint(tmp_path / "step-0000012", complete=False)
    assert latest_checkpoint(tmp_path).name == "step-0000010"


def test_prune_keeps_complete_checkpoints_over_interrupted_ones(tmp_path):
    for step in (2, 4, 6):
        _fake_checkpoint(tmp_path / f"step-{step:07d}")
    _fake_checkpoint(tmp_path / "step-0000008", complete=False)
    prune_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000006", "step-0000008"]
    assert latest_checkpoint(tmp_path).name == "step-0000006"


def test_resave_into_same_folder_is_incomplete_until_done(tmp_path, monkeypatch):
    model, opt, sched = _adam_after_steps()
    folder = tmp_path / "step-0000003"
    kw = dict(trainable=model.state_dict(), optimizer=opt, scheduler=sched)
    save_checkpoint(folder, trainer_state={"epoch": 0, "batches_in_epoch": 3, "global_step": 3}, **kw)

    def crash(path, obj):
        raise KeyboardInterrupt("killed while saving")
    monkeypatch.setattr(ckpt, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, trainer_state={"epoch": 1, "batches_in_epoch": 0, "global_step": 3}, **kw)
    assert latest_checkpoint(tmp_path) is None  # the stale marker of the first save is gone


def test_load_checkpoint_rejects_a_different_model(tmp_path):
    model, opt, sched = _adam_after_steps()
    save_checkpoint(tmp_path / "step-0000001", trainable={"0.weight": model[0].weight}, optimizer=opt,
                    scheduler=sched, trainer_state={"epoch": 0, "batches_in_epoch": 1, "global_step": 1})
    with pytest.raises(Exception, match="do not match the model being resumed"):
        load_checkpoint(tmp_path / "step-0000001", module=model, optimizer=opt, scheduler=sched)


def test_buffers_updated_by_training_survive_resume(world, backbone_dir, tmp_path):
    """A head with a buffer that training updates (like a negative queue): resume restores it."""
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.model import KnowledgeModel
    from kadapt.data.formats import read_records
    from kadapt.tasks.relation_classification import RelationClassification
    from kadapt.runs.loop import TrainConfig, train

    class CountingHead(RelationClassification):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

        def forward(self, features, batch):
            if self.training:
                self.seen += features.shape[0]
            return super().forward(features, batch)

    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    records = read_records("trex_rc", world["infuse_factual_train"], limit=16)

    def run(run_dir, resume=False, on_step=None):
        torch.manual_seed(0)
        model = KnowledgeModel(backbone)
        model.head = CountingHead(model.feature_size, labels=sorted({r.label for r in records}))
        examples = [model.head.encode(r, backbone.tokenizer, 48) for r in records]
        config = TrainConfig(epochs=2, batch_size=4, lr=1e-2, save_every=3, cpu=True, mixed_precision="no")
        train(model, examples, None, config, run_dir, pad_id=backbone.tokenizer.pad_token_id,
              resume=resume, on_step=on_step)
        return model.head

    full = run(tmp_path / "full")
    assert int(full.seen) == 32

    def crash(step, loss):
        if step == 5:
            raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        run(tmp_path / "resumed", on_step=crash)
    resumed = run(tmp_path / "resumed", resume=True)
    assert int(resumed.seen) == 32
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
