"""Hidden-state cache: same states as the backbone, keyed, rebuilt (never reused) on mismatch,
partial builds detected, and infusion/dev evaluation read from it without running the backbone."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from run_kit import factual_recipe, train_losses

from kadapt.store import hidden_cache as cache
from kadapt.cli.app import main
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import recipe_from_dict

TEXTS = ["Barack Obama was born in Hawaii .", "The quick brown fox jumps over the lazy dog .",
         "Paris is the capital of France .", "She reads books ."] * 3


@pytest.fixture()
def examples(tiny_backbone):
    return [{"input_ids": tiny_backbone.tokenizer(t)["input_ids"]} for t in TEXTS]


def _key(backbone, examples, tmp_path, dtype="float32", max_length=32):
    data = tmp_path / "data.txt"
    if not data.exists():
        data.write_text("\n".join(TEXTS))
    return cache.CacheKey.for_data(backbone, examples, [data], max_length, dtype)


def _fresh(backbone, example, layers):
    ids = torch.tensor([example["input_ids"]])
    return backbone.encode(ids, torch.ones_like(ids), layers)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-3), ("bfloat16", 2e-2)])
def test_cached_states_equal_backbone_states(dtype, tol, tiny_backbone, examples, tmp_path):
    layers = [0, 1, tiny_backbone.spec.num_layers]
    key = _key(tiny_backbone, examples, tmp_path, dtype)
    entry = cache.open_or_build(tiny_backbone, examples, layers, key, tmp_path / "c", batch_size=5)
    tokens = sum(len(e["input_ids"]) for e in examples)
    itemsize = {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]
    for k in layers:  # no padding stored: exactly tokens × hidden values per layer
        assert (entry.folder / f"layer_{k:03d}.bin").stat().st_size == tokens * tiny_backbone.spec.hidden_size * itemsize
    batch = entry.states([3, 0], layers)
    width = max(len(examples[3]["input_ids"]), len(examples[0]["input_ids"]))
    for k in layers:
        assert batch[k].shape == (2, width, tiny_backbone.spec.hidden_size)
        assert batch[k].dtype == getattr(torch, dtype)
        for i, row in enumerate([3, 0]):
            n = len(examples[row]["input_ids"])
            torch.testing.assert_close(batch[k][i, :n].float(), _fresh(tiny_backbone, examples[row], [k])[k][0],
                                       rtol=tol, atol=tol)
            assert not batch[k][i, n:].any()  # padding is zeros
    assert cache.estimate_bytes(examples, layers, tiny_backbone.spec.hidden_size, dtype) == \
        sum(p.stat().st_size for p in entry.folder.iterdir() if p.suffix in (".bin", ".i32"))


def test_mismatched_or_partial_cache_is_rebuilt_never_reused(tiny_backbone, examples, tmp_path, caplog):
    root, layers = tmp_path / "c", [0, 2]
    key = _key(tiny_backbone, examples, tmp_path)
    entry = cache.open_or_build(tiny_backbone, examples, layers, key, root)
    # another max_length / data file / token ids give another key and another entry
    assert _key(tiny_backbone, examples, tmp_path, max_length=16).digest != key.digest
    assert _key(tiny_backbone, examples[:-1], tmp_path).digest != key.digest
    (tmp_path / "data.txt").write_text("changed")
    assert _key(tiny_backbone, examples, tmp_path).digest != key.digest
    # a manifest recording another key in the entry's folder: rebuilt, with the reason logged
    manifest = json.loads((entry.folder / "manifest.json").read_text())
    manifest["key"]["weights_sha256"] = "0" * 64
    (entry.folder / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="kadapt.store.hidden_cache"):
        cache.open_or_build(tiny_backbone, examples, layers, key, root)
    assert "key differs (weights_sha256: '0000" in caplog.text
    # a truncated layer file (crash, full disk): detected and rebuilt
    layer = entry.folder / "layer_002.bin"
    layer.write_bytes(layer.read_bytes()[:100])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kadapt.store.hidden_cache"):
        rebuilt = cache.open_or_build(tiny_backbone, examples, layers, key, root)
    assert "layer_002.bin: 100 bytes, expected" in caplog.text
    assert layer.stat().st_size > 100 and np.isfinite(rebuilt.states([0], layers)[2].numpy()).all()
    # a wider request than the entry holds: rebuilt with the union of layers
    assert cache.open_or_build(tiny_backbone, examples, [1], key, root).layers == [0, 1, 2]
    # an interrupted build (no manifest) and a leftover partial folder: reported, then cleaned up
    (root / f"{entry.folder.name}.partial-99999999").mkdir()  # no such process: an interrupted build
    (entry.folder / "manifest.json").unlink()
    states = {e["entry"]: e["state"] for e in cache.describe(root)["entries"]}
    assert states[entry.folder.name].startswith("incomplete") and "partial build" in states[f"{entry.folder.name}.partial-99999999"]
    live = root / f"{entry.folder.name}.partial-{os.getppid()}"  # another process building right now
    live.mkdir()
    cache.open_or_build(tiny_backbone, examples, layers, key, root)
    assert [e["state"] for e in cache.describe(root)["entries"]] == ["complete", "being built by a running process"]
    live.rmdir()
    assert cache.clear(root) > 0 and cache.describe(root)["entries"] == []


def test_cached_infusion_matches_uncached_and_skips_the_backbone(world, backbone_dir, backbone, tmp_path, monkeypatch):
    cache_opts = {"cache": True, "cache_dir": str(tmp_path / "cache"), "cache_dtype": "float32"}
    plain = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "plain", epochs=2)), backbone=backbone)
    cached = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "cached", epochs=2, **cache_opts)),
                    backbone=backbone)
    # fp32 cache: the same run up to float rounding (cache batches are padded differently)
    assert train_losses(tmp_path / "cached") == pytest.approx(train_losses(tmp_path / "plain"), rel=1e-5, abs=1e-6)
    assert cached.train.final_dev["accuracy"] == plain.train.final_dev["accuracy"]
    entries = cache.describe(tmp_path / "cache")["entries"]
    assert len(entries) == 2 and {e["examples"] for e in entries} == {24}  # train and dev
    # once built, training and dev evaluation never run the backbone
    def no_backbone(*args, **kwargs):
        raise AssertionError("backbone ran although the states are cached")

    monkeypatch.setattr(backbone, "encode", no_backbone)
    again = infuse(recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "again", epochs=2, **cache_opts)),
                   backbone=backbone)
    assert train_losses(tmp_path / "again") == train_losses(tmp_path / "cached")
    assert again.train.final_dev == cached.train.final_dev


def test_cache_cli_build_info_clear(world, backbone_dir, tmp_path, capsys):
    from run_kit import write_yaml

    recipe = write_yaml(tmp_path / "f.yaml", factual_recipe(world, backbone_dir, tmp_path / "run"))
    root = tmp_path / "cache"
    assert main(["cache", "build", str(recipe), "training.cache_dtype=bfloat16", "--cache-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "hidden-state cache for factual: layers [0, 1, 2], 24 train + 24 dev examples" in out
    assert out.index("MB (bfloat16)") < out.index("train: ")  # the estimate comes before the build
    assert main(["cache", "info", "--cache-dir", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [e["state"] for e in info["entries"]] == ["complete", "complete"]
    assert {e["dtype"] for e in info["entries"]} == {"bfloat16"}
    # issue 19: clearing everything is confirmed (--yes, or a prompt on a terminal)
    assert main(["cache", "clear", "--cache-dir", str(root)]) == 2
    assert "cache clear would delete 2 entries" in capsys.readouterr().err and any(root.iterdir())
    assert main(["cache", "clear", "--cache-dir", str(root), "--yes"]) == 0
    assert "removed" in capsys.readouterr().out and not any(root.iterdir())
    assert main(["cache", "build", str(recipe), "training.cache_dtype=int8", "--cache-dir", str(root)]) == 2
    assert "cache dtype 'int8' unknown" in capsys.readouterr().err


def _fake_entry(root, name, size, last_used):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "layer-0.npy").write_bytes(b"\0" * size)
    os.utime(folder, (last_used, last_used))
    return folder


def test_prune_removes_partials_old_entries_then_least_recently_used(tmp_path, capsys):
    from kadapt.store.cache_prune import parse_size, plan_prune, prune

    root, now = tmp_path / "cache", 1_000_000_000.0
    _fake_entry(root, "a" * 32, 3000, now - 10 * 86400)   # old
    _fake_entry(root, "b" * 32, 2000, now - 3 * 86400)
    _fake_entry(root, "c" * 32, 1500, now - 1 * 86400)
    _fake_entry(root, "d" * 32, 1000, now - 60)            # most recent
    _fake_entry(root, "e" * 32 + ".partial-999999999", 700, now)  # no such process: interrupted
    plan = plan_prune(root, max_bytes=2600, older_than_days=7, now=now)
    assert {e["entry"][0]: e["why"] for e in plan.removed} == {
        "a": "unused for 10.0 days", "e": "interrupted partial build",
        "b": "least recently used beyond the 2.6 kB budget"}
    assert [e["entry"][0] for e in plan.kept] == ["d", "c"] and plan.kept_bytes == 2500
    assert prune(root, max_bytes=2600, older_than_days=7, dry_run=True, now=now).freed_bytes == 5700
    assert len(list(root.iterdir())) == 5  # a dry run removes nothing
    assert prune(root, max_bytes=2600, older_than_days=7, now=now).freed_bytes == 5700
    assert sorted(p.name[0] for p in root.iterdir()) == ["c", "d"]
    assert (parse_size("2GB"), parse_size("1.5GiB"), parse_size("500mb"), parse_size("0")) == (
        2 * 10**9, int(1.5 * 2**30), 500 * 10**6, 0)
    assert main(["cache", "prune", "--cache-dir", str(root), "--max-size", "lots"]) == 2
    assert "--max-size 'lots' is not a size" in capsys.readouterr().err
    assert main(["cache", "prune", "--cache-dir", str(root)]) == 2
    assert "give --max-size and/or --older-than" in capsys.readouterr().err
    assert main(["cache", "prune", "--cache-dir", str(root), "--max-size", "1200B", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 entries (0.0 MB); kept 1" in out and sorted(p.name[0] for p in root.iterdir()) == ["c", "d"]


def test_reading_an_entry_marks_it_used(tiny_backbone, examples, tmp_path):
    key = _key(tiny_backbone, examples, tmp_path)
    root = tmp_path / "cache"
    first = cache.open_or_build(tiny_backbone, examples, [0], key, root)
    os.utime(first.folder, (1.0, 1.0))
    again = cache.open_or_build(tiny_backbone, examples, [0], key, root)
    assert again.folder == first.folder and again.folder.stat().st_mtime > 1e9
