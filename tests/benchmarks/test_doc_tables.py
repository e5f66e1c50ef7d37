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


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_no_table_with_numbers_outside_the_markers(doc):
    text = DOCS[doc].read_text(encoding="utf-8")
    assert tables.unmarked_problems(text, doc) == []


@pytest.mark.parametrize("doc", sorted(tables.DESCRIPTIVE_TABLES))
def test_every_allowed_descriptive_table_is_still_in_its_doc(doc):
    lines = {line.strip() for line in DOCS[doc].read_text(encoding="utf-8").splitlines()}
    assert [header for header in tables.DESCRIPTIVE_TABLES[doc] if header not in lines] == []


def test_a_measured_table_outside_the_markers_is_named_with_its_line():
    marked = "<!-- table: quickstart -->\n| a | b |\n|---|---:|\n| x | 1.5 |\n<!-- /table -->\n"
    words = "| what | paper |\n|---|---|\n| layers | see text |\n"
    fenced = "```\n| n | s |\n| 1 | 2 |\n```\n"
    measured = "| model | acc |\n|---|---:|\n| probe | 67.6 |\n"
    text = "# T\n\n" + marked + "\n" + words + "\n" + fenced + "\n" + measured
    assert tables.unmarked_tables(text) == [(18, "| model | acc |")]
    described = "| family | layers |\n|---|---|\n| K-Adapter | 0, 11, 23 |\n"
    assert tables.unmarked_tables(described) == [(1, "| family | layers |")]
    assert tables.unmarked_tables(described, ("| family | layers |",)) == []
    problems = tables.unmarked_problems(text + "\n" + described, "README.md")
    assert problems == ["README.md:18: Markdown table with numbers outside <!-- table: NAME --> markers: | model | acc |",
                        "README.md:22: Markdown table with numbers outside <!-- table: NAME --> markers: | family | layers |"]


WRITTEN_BY_ARTIFACT = {  # results files written through benchmarks/artifact.py: script, command, settings, machine
    "fallback_cost": "benchmarks/fallback_cost.py", "infusion_step_quick": "benchmarks/infusion_step.py",
    "real_data_infusion_quick": "benchmarks/real_data_infusion.py", "real_data_infusion_full": "benchmarks/real_data_infusion.py",
    "issue7_cache_quick": "benchmarks/run.py", "issue7_cache_full": "benchmarks/run.py",
    "jaket_memory_speed": "benchmarks/jaket_memory_speed.py",
}


@pytest.mark.parametrize("stem", sorted({stem for _, stem in tables.RENDERERS.values()} & set(WRITTEN_BY_ARTIFACT)))
def test_results_file_names_its_script_command_settings_and_machine(stem):
    data = json.loads((tables.RESULTS / f"{stem}.json").read_text(encoding="utf-8"))
    assert data["written_by"] == WRITTEN_BY_ARTIFACT[stem] and (REPO / data["written_by"]).is_file()
    assert data["command"].startswith(f"python {data['written_by']}")
    assert isinstance(data["settings"], dict) and data["settings"]
    assert data["machine"]["cpu_count"] >= 1 and len(data["machine"]["loadavg"]) == 3


def _results(stem: str) -> dict:
    return json.loads((tables.RESULTS / f"{stem}.json").read_text(encoding="utf-8"))


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def test_the_readings_quote_the_figures_of_their_json():
    """The prose under a rendered table quotes its JSON: a rerun that changes a quoted figure fails here
    until the reading is rewritten."""
    text = " ".join(DOCS["benchmarks/README.md"].read_text(encoding="utf-8").split())
    step = _results("infusion_step_quick")
    memory = _results("jaket_memory_speed")
    cache = _results("issue7_cache_quick")["figures"]
    quick = _results("real_data_infusion_quick")["factual"]["rows"]
    full = _results("real_data_infusion_full")["factual"]["rows"]
    quoted = [f"{step['bf16_vs_fp32_kadapt']:.2f}× cheaper",
              *(f"{run['speedup_memory_vs_on_the_fly']:.1f}×" for run in memory["runs"]),
              f"{memory['memory_encoding']['wall_seconds']:.0f} s wall here",
              *(f"{cache[key]:.2f}×" for key in ("infusion_cached_vs_reference", "two_plugins_one_pass_vs_separate",
                                                 "finetune_shared_pass_vs_separate", "infusion_uncached_vs_reference")),
              f"added {cache['step_rss_mb_infusion_reference']:.1f} MB"]
    for rows, names in ((full, ("K-Adapter infused (infusion head)", "K-Adapter plug-in + fresh head (finetune)")),
                        (quick, ("K-Adapter infused (infusion head)", "K-Adapter plug-in + fresh head (finetune)"))):
        for name in names:
            gain = rows[name]["test"]["accuracy_gain_vs_probe"]
            quoted.append(f"{_signed(gain['points'])}")
            quoted.append(f"{_signed(gain['ci95'][0])} .. {_signed(gain['ci95'][1])}")
    full_cache = _results("issue7_cache_full")["figures"]
    quoted += [f"{full_cache['infusion_cached_vs_reference']:.2f}× (full)",
               f"{full_cache['two_plugins_one_pass_vs_separate']:.2f}× in both runs",
               f"/ {full_cache['finetune_shared_pass_vs_separate']:.2f}×",
               f"peaked at {full_cache['fresh_process_peak_rss_mb_infusion_reference']:.0f} MB against "
               f"{full_cache['fresh_process_peak_rss_mb_infusion_uncached']:.0f} MB"]
    ud = _results("real_data_infusion_full")["linguistic"]["rows"]
    quoted += [f"({100 * ud['backbone probe (linear head)']['test']['uas']:.1f}% test UAS",
               f"baseline's {100 * ud['attach to next word']['test']['uas']:.1f}%",
               f"reaches {100 * ud['K-Adapter infused (infusion head)']['test']['uas']:.1f}%"]
    assert [figure for figure in quoted if figure not in text] == []
