"""The README's per-family deviation tables name switches that exist, with the defaults they state."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from kadapt.plugins.jaket.plugin import JaketConfig
from kadapt.plugins.kadapter.plugin import LAYER_PRESETS, KAdapterConfig
from kadapt.plugins.trelm.plugin import TRELMConfig
from kadapt.plugins.xlmk.objective import XLMKObjective

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(family: str) -> str:
    text = README.read_text(encoding="utf-8")
    deviations = text[text.index("## Deviations from the papers and the reference code"):]
    deviations = deviations[: deviations.index("\n## ", 5)]
    start = deviations.index(f"**{family}**")
    end = deviations.find("\n**", start + 5)
    return deviations[start: end if end > 0 else None]


def _switches(section: str) -> set[str]:
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    names = {m for row in rows for m in re.findall(r"`(\w+)", row.split(" | ")[-1])}
    return names - {"empty", "random", "paper", "reference", "data", "training"}  # values and recipe sections


def test_every_family_has_a_deviation_table_with_the_five_columns():
    for family in ("K-Adapter", "XLM-K", "JAKET", "TRELM"):
        section = _section(family)
        assert "| what | paper | reference code | kadapt default | switch |" in section
        assert section.count("\n| ") >= 4


def test_xlmk_switches_are_objective_options_with_the_stated_defaults():
    switches = _switches(_section("XLM-K"))
    head = XLMKObjective(8, relations=["r"], queue_size=2)
    assert {"mask_same_entity", "queue_init", "bidirectional", "normalize", "temperature", "batch_norm",
            "mlm_weight", "mlm_rate"} <= switches
    assert switches <= set(head.options)
    assert (head.options["mask_same_entity"], head.options["queue_init"], head.options["bidirectional"]) == (
        False, "random", False)
    assert (head.options["mlm_weight"], head.options["mlm_rate"], head.mlm_head) == (0.0, 0.15, None)


def test_plugin_switches_are_config_fields():
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (KAdapterConfig, JaketConfig, TRELMConfig)}
    assert "layers" in _switches(_section("K-Adapter")) and set(LAYER_PRESETS) == {"paper", "reference"}
    assert KAdapterConfig().layers == "paper"
    from kadapt.plugins.kadapter.dependency_head import HEADS, DependencyHeadPrediction

    assert "`objective.config.head: reference`" in _section("K-Adapter") and HEADS == ("paper", "reference")
    assert DependencyHeadPrediction(8).config_dict()["head"] == "paper"
    assert {"refresh_memory", "fanouts"} <= _switches(_section("JAKET")) <= fields[JaketConfig]
    assert JaketConfig().refresh_memory is False
    assert _switches(_section("TRELM")) <= fields[TRELMConfig]
    assert {"routing", "inject_kg", "inject_long_tail", "long_tail_max_count", "routing_warmup_steps"} <= _switches(
        _section("TRELM"))
    trelm = TRELMConfig()
    assert (trelm.routing, trelm.attribution, trelm.ig_steps, trelm.routing_warmup_steps) == ("per_batch", "ig", 20, 50)
    assert trelm.inject_long_tail is True and trelm.long_tail_max_count == 10 and trelm.inject_kg == ""


def test_recipe_keys_named_in_the_tables_exist():
    from kadapt.runs.recipe import DataSection, TrainConfig

    text = README.read_text(encoding="utf-8")
    assert "`data.dev` (a file or a list), `training.seeds`" in text
    assert {"dev"} <= {f.name for f in dataclasses.fields(DataSection)}
    assert TrainConfig().seeds == []
