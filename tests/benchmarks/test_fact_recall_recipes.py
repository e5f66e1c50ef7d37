"""The T-REx held-out and fact-recall task recipes of ``benchmarks/fact_recall.py`` take ``--task-set``
overrides like every other task recipe of ``benchmarks/knowledge_effect.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from fact_recall import heldout_sentences_recipe, probe_recipes  # noqa: E402

from kadapt.runs.recipe import RecipeError


def test_task_overrides_reach_the_generated_recipes(tmp_path):
    overrides = ["finetune.fusion=kadapter", "training.cache=true", "training.epochs=2"]
    trex = heldout_sentences_recipe(tmp_path, "backbone-dir", overrides)
    assert (trex.finetune.fusion, trex.training.cache, trex.training.epochs) == ("kadapter", True, 2)
    assert trex.data.test == str(tmp_path / "test.jsonl")
    plain = heldout_sentences_recipe(tmp_path, "backbone-dir")
    assert (plain.finetune, plain.training.cache, plain.training.epochs) == (None, False, 5)
    probes = probe_recipes(tmp_path, "backbone-dir", overrides)
    assert [(p.name, p.finetune.fusion, p.training.epochs) for p in probes] == [
        ("recall-infused", "kadapter", 2), ("recall-held-out", "kadapter", 2)]


def test_a_bad_override_names_the_generated_recipe(tmp_path):
    with pytest.raises(RecipeError, match="trex-held-out.*finetune.fusion"):
        heldout_sentences_recipe(tmp_path, "backbone-dir", ["finetune.fusion=sideways"])
