"""SemEval-2010 Task 8 reader: tagged sentences, CRLF blocks, directed labels."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.data.semeval import read_semeval2010
from kadapt.core.errors import DataError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "semeval2010_task8.txt"


def test_reads_blocks_with_e1_as_subject_and_e2_as_object():
    records = list(read_semeval2010(FIXTURE))
    assert len(records) == 8
    first = records[0]
    assert "<e1>" not in first.text and first.text.endswith("of antenna elements.")
    assert first.text[slice(*first.subj_span)] == "configuration"
    assert first.text[slice(*first.obj_span)] == "elements"
    assert first.label == "Component-Whole(e2,e1)" and first.source == f"{FIXTURE}:1"
    assert records[1].label == "Other" and records[1].source == f"{FIXTURE}:5"
    assert records[7].text[slice(*records[7].subj_span)] == "People" and records[7].subj_span[0] == 0
    assert read_records("semeval2010", FIXTURE) == records


@pytest.mark.parametrize(("block", "message"), [
    ('9\t"A <e1>cat</e1> and a <e2>dog</e2>."\nCause-Effect(e1,e3)\n', r"bad\.txt:2: unknown label 'Cause-Effect\(e1,e3\)'"),
    ('9\t"A <e1>cat</e1> and a dog."\nOther\n', r"bad\.txt:1: .*exactly one <e1>"),
    ('9 "A <e1>cat</e1> and a <e2>dog</e2>."\nOther\n', r"bad\.txt:1: expected <id><TAB>"),
    ('9\t"A <e1>cat</e1> and a <e2>dog</e2>."\n', r"bad\.txt:1: sentence without a label line"),
    ('9\t"A <e1>cat</e1> and a <e2>dog</e2>."\nOther\nnoise\n', r"bad\.txt:3: unexpected line"),
])
def test_bad_blocks_name_file_and_line(tmp_path, block, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(block)
    with pytest.raises(DataError, match=message):
        list(read_semeval2010(bad))


def test_skip_policy_counts_bad_blocks(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text('1\t"A <e1>cat</e1> and a <e2>dog</e2>."\nOther\n\n2\t"no tags"\nOther\n\n'
                   '3\t"The <e1>fire</e1> caused <e2>smoke</e2>."\nCause-Effect(e1,e2)\nComment:\n')
    policy = ErrorPolicy("skip")
    assert [r.label for r in read_semeval2010(bad, policy)] == ["Other", "Cause-Effect(e1,e2)"]
    assert policy.skipped == 1


@pytest.mark.realdata
def test_real_train_file_matches_the_official_distribution(data_dir):
    records = list(read_semeval2010(data_dir / "semeval2010_task8" / "TRAIN_FILE.TXT"))
    assert len(records) == 8000
    assert [r.source.rsplit(":", 1)[1] for r in records[:2]] == ["1", "5"]
    types = Counter(r.label.split("(")[0] for r in records)
    # TRAIN_DISTRIB.TXT of the release
    assert types["Other"] == 1410 and types["Cause-Effect"] == 1003 and types["Instrument-Agency"] == 504
    assert len({r.label for r in records}) == 19
