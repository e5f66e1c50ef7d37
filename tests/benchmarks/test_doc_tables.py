"""Numbers in the docs come from artifacts: every marked table in README.md / benchmarks/README.md is
exactly what ``benchmarks/tables.py`` renders from ``benchmarks/results/<name>.json``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import tables  # noqa: E402

DOCS = {doc.relative_to(REPO).as_posix(): doc for doc in tables.DOCS}


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_marked_table_is_rendered_from_its_json(doc):
    text = DOCS[doc].read_text(encoding="utf-8")
    assert tables.differences(text, doc) == []


def test_every_renderer_backs_a_table_in_the_docs():
    names = [n for doc in DOCS.values() for n in tables.marked_tables(doc.read_text(encoding="utf-8"))]
    assert sorted(set(names)) == sorted(tables.RENDERERS)
    assert len(names) == len(set(names))


def test_a_hand_edited_cell_fails_and_the_real_table_passes():
    text = DOCS["benchmarks/README.md"].read_text(encoding="utf-8")
    real = tables.render("quickstart")
    assert real in text and tables.differences(text) == []
    data = json.loads((tables.RESULTS / "quickstart.json").read_text(encoding="utf-8"))
    cell = f"{100 * data['results']['facts']['+L']['test']:.1f}"
    edited_row = real.splitlines()[2].replace(f"| {cell} |", "| 21.0 |")
    assert edited_row != real.splitlines()[2]
    edited = text.replace(real.splitlines()[2], edited_row)
    problems = tables.differences(edited, "benchmarks/README.md")
    assert len(problems) == 1 and "table 'quickstart' differs" in problems[0]
    assert problems[0].startswith("benchmarks/README.md:")
    assert tables.differences(tables.rendered(edited)) == []  # re-rendering repairs it


def test_quickstart_artifact_was_written_by_its_script_and_is_complete():
    data = json.loads((tables.RESULTS / "quickstart.json").read_text(encoding="utf-8"))
    assert data["written_by"] == "benchmarks/quickstart_table.py"
    assert data["continual_infusion_files_unchanged"] is True
    assert set(data["results"]) == {"facts", "syntax"}
    for row in data["results"].values():
        assert set(row) == {"bare", "+F", "+L", "+F+L"}
        assert all(0.0 < cell["test"] < 1.0 for cell in row.values())
