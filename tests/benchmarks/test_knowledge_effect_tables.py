"""The knowledge-effect time and verdict tables: exact Markdown from a results dict shaped as
benchmarks/knowledge_effect.py writes it (infusions with different dev metrics, a grid with two calls)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import tables  # noqa: E402


def _timings(total: float) -> dict:
    return {"infusions and twins": 600.0, "t: read + features": 50.0, "t: backbone states (cache build or read)": 20.0,
            "t: heads": 30.0, "total": total}


def _grid() -> dict:
    return {"note": "F and L", "meta": {"infusion_seeds": [42]},
            "infusion_dev": {"F/seed-42": {"accuracy": 0.75, "micro_f1": 0.75, "wall_seconds": 221.4},
                             "L/seed-42": {"uas": 0.7001, "wall_seconds": 193.8},
                             "F/seed-7": {"accuracy": 0.7, "wall_seconds": 300.0}},  # not a seed of this grid
            "timing_calls": [{"timings": _timings(700.0)}, {"timings": _timings(710.0)}],
            "summary": [
                {"task": "t", "variant": "F", "vs_twin": {"diff": 0.05, "ci95": [0.02, 0.08]}},
                {"task": "t", "variant": "L", "vs_twin": {"diff": -0.03, "ci95": [-0.05, -0.01]}},
                {"task": "u", "variant": "all", "vs_twin": {"diff": 0.01, "ci95": [-0.01, 0.03]}},
                {"task": "recall-infused", "variant": "F", "vs_twin": {"diff": 0.5, "ci95": [0.4, 0.6]}}]}


def test_time_table_names_each_infusions_own_dev_metric_and_every_call():
    lines = tables.knowledge_effect_time({"grids": {"g": _grid()}}).splitlines()
    assert lines[2:5] == ["| g | infusion F/seed-42 (dev accuracy 75.0) | 221 |",
                          "| g | infusion L/seed-42 (dev uas 70.0) | 194 |",
                          "| g | call 1/2: infusions and twins | 600 |"]
    assert "| g | call 1/2: backbone states (cache build or read) | 20 |" in lines
    assert "| g | call 1/2: plug-in / lower-layer features, reading data | 30 |" in lines
    assert "| g | call 2/2: total | 710 |" in lines
    assert not any("seed-7" in line for line in lines)


def test_verdict_counts_only_real_tasks_whose_interval_is_above_zero():
    lines = tables.knowledge_effect_verdict({"grids": {"g": _grid()}}).splitlines()
    assert lines[2] == "| g | F and L | t: F +5.0 [+2.0, +8.0] ✓; u: all +1.0 [-1.0, +3.0] | t | no |"


def test_headline_shows_the_first_plugin_against_its_twin_per_real_task():
    other = {"note": "", "summary": [{"task": "u", "variant": "F", "vs_twin": {"diff": 0.02, "ci95": [-0.01, 0.05]}}]}
    lines = tables.knowledge_effect_headline({"grids": {"g": _grid(), "h": other}}).splitlines()
    assert lines[0] == "| grid | plug-in | t: − R-twin [95% CI] | u: − R-twin [95% CI] |"
    assert lines[2:] == ["| g | F | +5.0 [+2.0, +8.0] ✓ | – |", "| h | F | – | +2.0 [-1.0, +5.0] |"]
