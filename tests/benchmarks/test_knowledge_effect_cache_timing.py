"""``benchmarks/knowledge_effect.py --cache-timing``: one infusion run three ways on the tiny world, and the
cache table rendered from what it wrote."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml

from run_kit import factual_recipe

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import knowledge_effect  # noqa: E402
import tables  # noqa: E402


def test_cache_timing_runs_three_modes_and_the_table_renders_them(world, backbone_dir, tmp_path):
    recipe = tmp_path / "factual.yaml"
    recipe.write_text(yaml.safe_dump(factual_recipe(world, backbone_dir, tmp_path / "unused", epochs=1)), encoding="utf-8")
    results = tmp_path / "r.json"
    assert knowledge_effect.main(["--cache-timing", "3", "--plugins", f"F={recipe}", "--infuse-set", "data.limit=20",
                                  "--out", str(tmp_path / "ct"), "--results", str(results),
                                  "--threads", str(torch.get_num_threads())]) == 0
    timing = json.loads(results.read_text(encoding="utf-8"))["cache_timing"]
    modes = timing["modes"]
    assert list(modes) == ["no cache", "cache built from empty", "cache hit"]
    assert (timing["seed"], timing["overrides"], timing["epochs"]) == (3, ["data.limit=20"], 1)
    assert modes["no cache"]["cache_bytes_on_disk"] == 0
    assert modes["cache built from empty"]["cache_bytes_on_disk"] > 0
    assert modes["cache hit"]["cache_bytes_on_disk"] == modes["cache built from empty"]["cache_bytes_on_disk"]
    assert modes["cache hit"]["dev"] == modes["cache built from empty"]["dev"]  # same seed, same cached states
    for mode in modes:
        run_recipe = yaml.safe_load((tmp_path / "ct" / mode.replace(" ", "-") / "recipe.yaml").read_text(encoding="utf-8"))
        assert run_recipe["training"]["seed"] == 3 and run_recipe["training"]["cache"] == (mode != "no cache")
        assert run_recipe["data"]["limit"] == 20
    lines = tables.knowledge_effect_cache({"grids": {}, "cache_timing": timing}).splitlines()
    base = modes["no cache"]["wall_seconds"]
    hit = modes["cache hit"]
    assert lines[4] == (f"| one infusion: cache hit | {hit['wall_seconds']:.0f} | {base / hit['wall_seconds']:.2f}× | "
                        f"dev accuracy {100 * hit['dev']['accuracy']:.1f}; cache "
                        f"{hit['cache_bytes_on_disk'] / 2**20:,.0f} MB on disk |")


def test_cache_table_sums_every_call_of_each_grid():
    calls = [{"timings": {"total": 700.4}}, {"timings": {"total": 300.0}}]
    lines = tables.knowledge_effect_cache({"grids": {"g": {"timing_calls": calls, "threads": 2}}}).splitlines()
    assert lines[2:] == ["| grid g: the whole comparison | 1000 | – | 2 calls, 2 threads |"]


def test_merge_keeps_the_cache_timing_and_every_grid(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"grids": {"g": {"command": "c1", "timings": {"total": 1.0}}}}), encoding="utf-8")
    second.write_text(json.dumps({"grids": {}, "cache_timing": {"seed": 7}}), encoding="utf-8")
    knowledge_effect.merge([str(first), str(second)], tmp_path / "m.json")
    merged = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert merged["cache_timing"] == {"seed": 7}
    assert merged["grids"]["g"]["timing_calls"] == [{"command": "c1", "timings": {"total": 1.0}}]


def test_a_second_call_into_the_same_folder_does_not_count_the_old_cache(world, backbone_dir, tmp_path):
    recipe = tmp_path / "factual.yaml"
    recipe.write_text(yaml.safe_dump(factual_recipe(world, backbone_dir, tmp_path / "unused", epochs=1)), encoding="utf-8")
    args = ["--cache-timing", "3", "--plugins", f"F={recipe}", "--infuse-set", "data.limit=12", "--out",
            str(tmp_path / "ct"), "--results", str(tmp_path / "r.json"), "--threads", str(torch.get_num_threads())]
    for _ in range(2):
        assert knowledge_effect.main(args) == 0
        modes = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["cache_timing"]["modes"]
        assert modes["no cache"]["cache_bytes_on_disk"] == 0 < modes["cache hit"]["cache_bytes_on_disk"]
