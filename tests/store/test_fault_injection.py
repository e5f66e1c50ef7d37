"""Fault injection (issue 19): kill -9 during saves, concurrent zoo writers, kill -9 + resume.

The save and zoo trials fork the test process (a real separate process, killed with SIGKILL via
``os.kill``), so each trial costs milliseconds, not an interpreter start. The resume trial runs the
training in a fresh interpreter and kills it there.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import kadapt.core.folders as folders
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.store.plugin_dir import load_plugin, save_plugin
from kadapt.store.zoo import Zoo
from run_kit import ADAPTER, BACKBONE_KW, factual_recipe, small_world, tree_digest, write_yaml

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    from kadapt.core.backbone import FrozenBackbone

    return FrozenBackbone.from_pretrained(tiny_backbone_dir("bert", **BACKBONE_KW))


def _plugin(backbone, seed: int):
    torch.manual_seed(seed)
    return build_plugin("kadapter", {"name": f"p{seed}", **ADAPTER}, backbone.spec)


def _save(plugin, path, backbone, **kw):
    return save_plugin(plugin, path, backbone.fingerprint, objectives=[{"name": "relation_classification"}],
                       heads={"h.weight": torch.full((3, 4), float(len(plugin.config.name)))}, **kw)


def _child(work) -> int:
    """Fork; the child runs ``work()`` and exits (never returns into pytest)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException:  # noqa: BLE001 - the child reports through its exit status only
            code = 1
        os._exit(code)
    return pid


def _kill_trials(tmp_path, backbone, trials: int, exchange: bool, seed: int = 0) -> dict[str, int]:
    """Save A and B alternately over one folder in a child; kill -9 it at a random time; the folder
    must then be byte-identical to a clean save of A or of B (and load)."""
    rng = random.Random(seed)
    a, b = _plugin(backbone, 1), _plugin(backbone, 2)
    refs = {"A": tree_digest(_save(a, tmp_path / "refA", backbone)),
            "B": tree_digest(_save(b, tmp_path / "refB", backbone))}
    target = tmp_path / "target"
    _save(a, target, backbone)
    start = time.perf_counter()
    _save(b, target, backbone, overwrite=True)
    one_save = time.perf_counter() - start
    outcomes = {"A": 0, "B": 0}

    def loop():
        if not exchange:
            folders._exchange = lambda x, y: False  # the two-rename fallback (+ recovery on load)
        while True:
            for plugin in (a, b):
                _save(plugin, target, backbone, overwrite=True)

    for _ in range(trials):
        pid = _child(loop)
        time.sleep(rng.uniform(2, 8) * one_save)  # a random point inside one of the next few saves
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        load_plugin(target, backbone)  # manifest, binding and tensors all check out (recovers if needed)
        digest = tree_digest(target)
        found = [name for name, ref in refs.items() if ref == digest]
        assert found, f"folder after kill is neither A nor B: {sorted(digest)}"
        outcomes[found[0]] += 1
        folders.clean_stale(target)  # the killed child's staging folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".target.")]
    return outcomes


def test_kill_during_overwrite_quick(tmp_path, backbone):
    outcomes = _kill_trials(tmp_path, backbone, trials=6, exchange=True)
    assert sum(outcomes.values()) == 6


@pytest.mark.slow
@pytest.mark.parametrize("exchange", [True, False], ids=["rename-exchange", "two-renames"])
def test_kill_during_overwrite_many(tmp_path, backbone, exchange):
    outcomes = _kill_trials(tmp_path, backbone, trials=40, exchange=exchange, seed=int(exchange))
    print(f"\nkill -9 during save over an existing plug-in ({'exchange' if exchange else 'fallback'}): "
          f"40 trials, {outcomes}")
    assert sum(outcomes.values()) == 40 and min(outcomes.values()) > 0


def _concurrent_adds(tmp_path, backbone, n: int) -> None:
    sources = [_save(_plugin(backbone, 10 + i), tmp_path / f"src{i}", backbone) for i in range(n)]
    zoo_dir, results = tmp_path / "zoo", tmp_path / "results"
    results.mkdir()
    go = time.time() + 0.3

    def add(i):
        def work():
            time.sleep(max(0.0, go - time.time()))
            try:
                Zoo(zoo_dir).add(sources[i], "same")
                (results / str(i)).write_text("ok")
            except KadaptError as err:
                (results / str(i)).write_text(f"error: {err}")
        return work

    pids = [_child(add(i)) for i in range(n)]
    for pid in pids:
        os.waitpid(pid, 0)
    texts = {i: (results / str(i)).read_text() for i in range(n)}
    winners = [i for i, text in texts.items() if text == "ok"]
    assert len(winners) == 1, texts
    for i, text in texts.items():
        if i != winners[0]:
            assert text.startswith("error: ") and "\n" not in text and "same" in text, text
    entry = zoo_dir / "same"
    load_plugin(entry, backbone)
    assert tree_digest(entry) == tree_digest(sources[winners[0]])
    assert [e["name"] for e in Zoo(zoo_dir).entries()] == ["same"]
    assert not [p for p in zoo_dir.iterdir() if ".staging-" in p.name]


def test_concurrent_zoo_adds_quick(tmp_path, backbone):
    _concurrent_adds(tmp_path, backbone, 6)


@pytest.mark.slow
def test_concurrent_zoo_adds_many(tmp_path, backbone):
    _concurrent_adds(tmp_path, backbone, 21)


def test_zoo_name_reserved_before_training_and_freed_by_a_kill(tmp_path, backbone):
    zoo = Zoo(tmp_path / "zoo")
    pid = _child(lambda: (zoo.reserve("factual"), time.sleep(60)))
    deadline = time.time() + 10
    while not (tmp_path / "zoo" / ".factual.lock").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    with pytest.raises(KadaptError, match=r"zoo entry .*factual is being written by another run right now"):
        zoo.reserve("factual")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert zoo.reserve("factual") == (tmp_path / "zoo" / "factual").resolve()  # the OS dropped the dead lock
    zoo.release("factual")


_CHILD = """
import functools, sys, time, torch
torch.set_num_threads(1)
import kadapt.runs.infuse as infuse_mod
from kadapt.runs.loop import train
from kadapt.runs.recipe import load_recipe
slow = sys.argv[3] == "slow"
def on_step(step, loss):
    if slow:
        time.sleep(0.05)  # widen the window so the kill lands mid-run; numerics untouched
infuse_mod.train = functools.partial(train, on_step=on_step)
infuse_mod.infuse(load_recipe(sys.argv[1]), out=sys.argv[2], resume=sys.argv[4] == "resume")
"""


def _run_child(recipe: Path, out: Path, slow: bool, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), str(Path(__file__).parents[1])])}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(recipe), str(out), "slow" if slow else "fast",
                             "resume" if resume else "fresh"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill9_then_resume_is_bit_identical(tmp_path, tiny_backbone_dir):
    world = small_world(tmp_path / "world")
    backbone_dir = tiny_backbone_dir("bert", **BACKBONE_KW)
    kw = dict(batch_size=4, epochs=3, save_every=2, keep_checkpoints=10)
    recipe = write_yaml(tmp_path / "r.yaml", factual_recipe(world, backbone_dir, tmp_path / "unused", **kw))
    full = _run_child(recipe, tmp_path / "full", slow=False, resume=False)
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()
    killed = _run_child(recipe, tmp_path / "killed", slow=True, resume=False)
    marker = tmp_path / "killed" / "checkpoints" / "step-0000004" / "trainer_state.json"
    deadline = time.time() + 120
    while not marker.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(random.Random(0).uniform(0.0, 0.2))
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert not (tmp_path / "killed" / "plugin").exists(), "the kill must land before the end of the run"
    resumed = _run_child(recipe, tmp_path / "killed", slow=False, resume=True)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    a, b = tree_digest(tmp_path / "full" / "plugin"), tree_digest(tmp_path / "killed" / "plugin")
    assert a == b  # every file of the plug-in folder, byte for byte
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
               if '"train"' in line] for run in ("full", "killed")]
    assert losses[0] == losses[1]
