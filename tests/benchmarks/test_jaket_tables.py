"""The JAKET-on-text tables: exact Markdown from a results dict shaped as benchmarks/jaket_text.py and
benchmarks/jaket_linking_coverage.py write it (a partial run renders its missing cells as "—")."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import jaket_text  # noqa: E402
import tables  # noqa: E402


def _run(acc, seed, any_linked=None):
    row = {"test_accuracy": acc, "seed": seed}
    if any_linked is not None:
        row["linking"] = {"test": {"any_linked": any_linked, "all_linked": any_linked / 4}}
    return row


def test_jaket_text_summary_and_table_from_per_cell_rows():
    args = argparse.Namespace(seeds=[0, 1], kg="KG", limit=600, epochs=3, infusion_limit=2000, fewrel_train_episodes=300,
                              fewrel_eval_episodes=200, fewrel_max_length=128, ec_steps=300, ec_fractions=[0.05])
    runs = {"fewrel": {"bare": [_run(0.5, 0), _run(0.7, 1)],
                       "untrained JAKET": [_run(0.6, 0, 0.8), _run(0.6, 1, 0.6)],
                       "infused JAKET": [_run(0.65, 0, 0.8)]},  # seed 1 not run yet
            "ec@0.05": {"bare": [_run(0.4, 0)], "untrained JAKET": [], "infused JAKET": []}}
    data = jaket_text.summarize(args, runs, {"0": {"steps": 90}}, {})
    assert data["tasks"]["fewrel"]["rows"]["bare"]["std"] == pytest.approx(2 ** 0.5 / 10)  # sample std (n-1), not 0.1
    assert data["tasks"]["fewrel"]["test_coverage"] == pytest.approx({"any_linked": 2.2 / 3, "all_linked": 0.55 / 3})
    assert tables.jaket_text(data).splitlines() == [
        "| model | (a) RC, held-out T-REx facts | (b) FewRel 5-way 1-shot | (b) coverage ≥1/all (%) "
        "| (c) KG entity classification, 5% train | seeds |",
        "|---|---:|---:|---:|---:|---:|",
        "| bare | — | 60.0 ± 14.1 | — | 40.0 ± 0.0 | 1/2 |",
        "| untrained JAKET | — | 60.0 ± 0.0 | 70/18 | — | 2 |",
        "| infused JAKET | — | 65.0 ± 0.0 | 80/20 | — | 1 |",
    ]


def test_jaket_linking_table_leaves_linker_scores_blank_without_gold_ids():
    cov = {"ids": {"any": 0.0, "both": 0.0}, "linker": {"any": 0.25, "both": 0.25}, "ids+linker": {"any": 0.25, "both": 0.25}}
    gold = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "gold_mentions": 2400}
    data = {"data": {"fewrel": {"instances": 1200, "coverage": cov, "linker_vs_gold": gold},
                     "open_entity": {"instances": 3, "coverage": cov, "linker_vs_gold": None}}}
    assert tables.jaket_linking(data).splitlines()[2:] == [
        "| fewrel | 1,200 | 0.0 / 0.0 | 25.0 / 25.0 | 25.0 / 25.0 | 50.0 | 25.0 | 33.3 | 2,400 |",
        "| open_entity | 3 | 0.0 / 0.0 | 25.0 / 25.0 | 25.0 / 25.0 | — | — | — | — |",
    ]
