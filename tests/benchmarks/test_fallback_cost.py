"""The README's fallback-cost table is the one ``benchmarks/tables.py`` renders from the results JSON that
``benchmarks/fallback_cost.py`` wrote."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import tables  # noqa: E402


def test_readme_table_comes_from_the_results_json():
    results = json.loads((REPO / "benchmarks" / "results" / "fallback_cost.json").read_text(encoding="utf-8"))
    assert results["written_by"] == "benchmarks/fallback_cost.py"
    seconds = results["seconds"]
    assert results["fallback_over_layered_lower_half"] == round(
        seconds["fallback_states_0_6"] / seconds["layered_states_0_6"], 2)
    assert results["fallback_over_layered_all_layers"] == round(
        seconds["fallback_states_0_6_12"] / seconds["layered_states_0_6_12"], 2)
    table = tables.render("fallback-cost")
    assert f"| 0 and 6 (lower half) | {1000 * seconds['layered_states_0_6']:.0f} |" in table
    assert f"| {results['fallback_over_layered_lower_half']:.2f}× |" in table
    assert f"self-check took {seconds['self_check_once'] * 1000:.0f} ms" in table
    assert "<!-- table: fallback-cost -->\n" + table + "<!-- /table -->" in (REPO / "README.md").read_text(encoding="utf-8")
    assert results["fallback_over_layered_lower_half"] > 1.2  # reading half the layers must pay off
