"""FIGER reader (the K-Adapter / ERNIE release: JSON with sent/start/end/labels)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kadapt.data.figer import read_figer
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "figer.json"


def test_reads_the_release_format():
    records = list(read_figer(FIXTURE))
    assert len(records) == 6
    first = records[0]
    assert first.text[slice(*first.span)] == "Barack Obama"
    assert first.labels == ("/person", "/person/politician")
    assert first.source == f"{FIXTURE}[0]"
    assert records[2].text[slice(*records[2].span)] == "London"
    assert read_records("figer", FIXTURE) == records


def test_json_lines_are_read_too(tmp_path):
    objs = json.loads(FIXTURE.read_text())
    lines = tmp_path / "figer.jsonl"
    lines.write_text("\n".join(json.dumps(o) for o in objs[:2]) + "\n")
    records = list(read_figer(lines))
    assert [r.labels for r in records] == [("/person", "/person/politician"),
                                           ("/organization", "/organization/educational_institution")]
    assert records[1].source == f"{lines}:2"


def test_bad_records_name_file_and_place(tmp_path):
    objs = json.loads(FIXTURE.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([objs[0], {**objs[1], "end": 999}]))
    with pytest.raises(DataError, match=r"bad\.json: record \[1\]: mention span \[14, 999\) is outside"):
        list(read_figer(bad))
    lines = tmp_path / "bad.jsonl"
    lines.write_text(json.dumps(objs[0]) + "\n" + json.dumps({**objs[1], "labels": []}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: key 'labels' must be a non-empty list"):
        list(read_figer(lines))
    policy = ErrorPolicy("skip")
    assert len(list(read_figer(lines, policy=policy))) == 1
    assert policy.summary() == {"bad record": 1, "malformed JSON": 1}


def test_open_entity_file_is_not_figer():
    oe = Path(__file__).resolve().parents[1] / "fixtures" / "open_entity_crowd.json"
    with pytest.raises(DataError, match=r"open_entity_crowd\.json:1: key 'sent' must be a non-empty string"):
        list(read_figer(oe))
