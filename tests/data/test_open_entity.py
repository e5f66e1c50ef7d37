"""Open Entity (UFET crowd split) reader: sentence rebuilt from the context tokens, 9 general types."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kadapt.data.open_entity import GENERAL_TYPES, read_open_entity
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "open_entity_crowd.json"


def test_reads_official_lines_into_sentence_span_and_general_types():
    records = list(read_open_entity(FIXTURE))
    assert len(records) == 6
    first = records[0]
    assert first.text == "The British Information Commissioner 's Office invites Web users to locate its address using Google Maps ."
    assert first.text[slice(*first.span)] == "Web users"
    assert first.labels == ("person",)  # "citizen", "user" are not general types
    assert first.source == f"{FIXTURE}:1"
    assert records[3].text == "Marie Curie worked in Paris" and records[3].text[slice(*records[3].span)] == "Paris"
    assert records[3].labels == ("location", "organization", "place")
    assert records[4].span == (0, 6) and records[4].labels == ()  # no general type: an empty label set
    assert read_records("open_entity", FIXTURE) == records


def test_types_none_keeps_all_labels():
    records = list(read_open_entity(FIXTURE, types=None))
    assert records[0].labels == ("citizen", "person", "user")


def test_bad_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    good = FIXTURE.read_text().splitlines()[0]
    bad.write_text(good + "\n{not json\n" + good.replace('"mention_span": "Web users"', '"mention_span": ""') + "\n")
    with pytest.raises(DataError, match=r"bad\.json:2: malformed JSON"):
        list(read_open_entity(bad))
    policy = ErrorPolicy("skip")
    assert len(list(read_open_entity(bad, policy))) == 1
    assert policy.skipped == 2
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    with pytest.raises(DataError, match="file is empty"):
        list(read_open_entity(empty))


@pytest.mark.realdata
def test_real_crowd_split(data_dir):
    root = data_dir / "open_entity" / "crowd"
    for split in ("train", "dev", "test"):
        records = list(read_open_entity(root / f"{split}.json"))
        assert len(records) == 1998
        assert {label for r in records for label in r.labels} <= set(GENERAL_TYPES)
    train = list(read_open_entity(root / "train.json"))
    assert sum(not r.labels for r in train) == 288
    assert Counter(label for r in train for label in r.labels)["person"] == 803
    assert sorted((root.parent / "ontology" / "types.txt").read_text().split()[:9]) == list(GENERAL_TYPES)
