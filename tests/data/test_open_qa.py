"""SearchQA / Quasar-T reader (DS-QA release: SPLIT.txt questions + answers, SPLIT.json paragraphs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kadapt.data.open_qa import read_open_qa
from kadapt.data.policy import ErrorPolicy
from kadapt.core.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_searchqa_flat_paragraph_list():
    records = list(read_open_qa(FIXTURES / "searchqa" / "train.json"))
    assert [len(r.paragraphs) for r in records] == [3, 2, 2]
    assert records[1].answers == (("Nile", -1), ("the Nile", -1))
    assert records[1].source == f"{FIXTURES / 'searchqa' / 'train.txt'}:2" and records[1].id == "train-2"
    assert list(read_open_qa(FIXTURES / "searchqa" / "train.txt")) == records  # either file names the split


def test_quasar_t_grouped_tokenised_paragraphs():
    records = list(read_open_qa(FIXTURES / "quasar_t" / "test.txt"))
    assert records[0].paragraphs == ("Iron is a chemical element with symbol Fe .", "Gold has the symbol Au .")
    assert records[1].answers == (("Canberra", -1),)


def test_bad_inputs_name_file_and_line(tmp_path):
    src = FIXTURES / "searchqa"
    (tmp_path / "dev.json").write_text((src / "train.json").read_text())
    lines = (src / "train.txt").read_text().splitlines()
    (tmp_path / "dev.txt").write_text("\n".join([lines[0], '{"question": "q", "answers": []}',
                                                 json.dumps({"question": "unknown", "answers": ["x"]})]) + "\n")
    with pytest.raises(DataError, match=r"dev\.txt:2: expected \{\"question\": str, \"answers\""):
        list(read_open_qa(tmp_path / "dev.json"))
    policy = ErrorPolicy("skip")
    assert len(list(read_open_qa(tmp_path / "dev.json", policy=policy))) == 1
    assert policy.summary() == {"bad question": 1, "no paragraphs": 1}
    (tmp_path / "lone.json").write_text("[]")
    with pytest.raises(DataError, match=r"lone\.txt: missing"):
        list(read_open_qa(tmp_path / "lone.json"))
    with pytest.raises(DataError, match="a DS-QA split is SPLIT.txt"):
        list(read_open_qa(FIXTURES / "sample.conllu"))
