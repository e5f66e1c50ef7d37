"""The README's fallback-cost figures are the ones ``benchmarks/fallback_cost.py`` wrote to its results JSON."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_figures_come_from_the_results_json():
    results = json.loads((REPO / "benchmarks" / "results" / "fallback_cost.json").read_text(encoding="utf-8"))
    readme = REPO / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    seconds = results["seconds"]
    assert results["fallback_over_layered_lower_half"] == round(
        seconds["fallback_states_0_6"] / seconds["layered_states_0_6"], 2)
    assert f"costs **{results['fallback_over_layered_lower_half']}×** the layered path" in text
    assert f"{results['fallback_over_layered_all_layers']}× when the last layer is needed" in text
    assert f"self-check took {seconds['self_check_once'] * 1000:.0f} ms" in text
    assert results["fallback_over_layered_lower_half"] > 1.2  # reading half the layers must pay off
