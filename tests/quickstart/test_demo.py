"""The README's main job at toy scale: every stage runs and leaves what `kadapt quickstart` promises."""
from __future__ import annotations

import json

from kadapt.cli.app import main
from kadapt.quickstart.demo import COMBOS, run_quickstart
from kadapt.quickstart.world import WorldConfig
from kadapt.store.zoo import Zoo

SMALL = dict(n_people=8, n_cities=5, n_countries=2, n_companies=4, syntax_train_sentences=60,
             syntax_dev_sentences=20, syntax_task_sizes=(20, 20, 20))


def test_quickstart_story_end_to_end(tmp_path):
    report = run_quickstart(tmp_path, infuse_epochs=2, finetune_epochs=1, world=WorldConfig(seed=1, **SMALL))
    assert report.continual_ok
    assert set(report.results) == {"facts", "syntax"}
    for row in report.results.values():
        assert set(row) == set(COMBOS)
        assert all(0.0 <= cell["test"] <= 1.0 for cell in row.values())
    for combo in COMBOS:
        assert f"| {combo} " in report.table or f" {combo} |" in report.table
    entries = {e["name"]: e for e in Zoo(tmp_path / "adapters_zoo").entries()}
    assert set(entries) == {"factual", "linguistic"}
    assert entries["factual"]["objectives"] == ["relation_classification"]
    assert entries["linguistic"]["objectives"] == ["dependency_head"]
    assert len(Zoo(tmp_path / "adapters_zoo").by_backbone()) == 1  # both on the same backbone fingerprint
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["continual_infusion_files_unchanged"] is True
    # both fine-tuned runs with F+L concatenate two plug-ins
    head = json.loads((tmp_path / "runs" / "finetune-facts+F+L" / "head_config.json").read_text())
    assert len(head["plugins"]) == 2


def test_quickstart_cli_reuses_existing_zoo(tmp_path, capsys, monkeypatch):
    """A second `kadapt quickstart` into the same folder reuses the plug-ins (no re-infusion)."""
    import kadapt.quickstart.demo as demo

    world = WorldConfig(seed=2, **SMALL)
    run_quickstart(tmp_path, infuse_epochs=1, finetune_epochs=1, world=world)
    before = {p: p.read_bytes() for p in (tmp_path / "adapters_zoo").rglob("*") if p.is_file()}
    original = demo.run_quickstart
    monkeypatch.setattr(demo, "run_quickstart",
                        lambda out, **kw: original(out, infuse_epochs=1, finetune_epochs=1, world=world, **kw))
    assert main(["quickstart", "--out", str(tmp_path)]) == 0
    assert "| facts (micro_f1) |" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in (tmp_path / "adapters_zoo").rglob("*") if p.is_file()}
    assert after == before
