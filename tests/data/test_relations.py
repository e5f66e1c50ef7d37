"""T-REx-rc / TACRED, FewRel and LAMA T-REx readers: exact records, every bad input, skip counting."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import RelationExample
from kadapt.data.relations import read_fewrel, read_lama_trex, read_lama_trex_dir, read_trex_rc
from kadapt.core.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

GOOD = {"token": ["Bill", "Gates", "founded", "Microsoft", "."], "subj_start": 0, "subj_end": 1,
        "obj_start": 3, "obj_end": 3, "relation": "P112"}


def surfaces(ex: RelationExample) -> tuple[str, str]:
    return ex.text[slice(*ex.subj_span)], ex.text[slice(*ex.obj_span)]


def write_lines(path: Path, *records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------- T-REx-rc


def test_trex_rc_array_exact_records():
    path = FIXTURES / "trex_rc.json"
    exs = list(read_trex_rc(path))
    assert [e.label for e in exs] == ["P19", "P112-inverse", "P36"]
    first = exs[0]
    assert first.text == "Allan Peiper was born in Alexandra , Victoria ."
    assert first.subj_span == (0, 12) and first.obj_span == (25, 45)
    assert surfaces(first) == ("Allan Peiper", "Alexandra , Victoria")
    assert surfaces(exs[1]) == ("Bill Gates", "Microsoft")  # object before subject
    assert surfaces(exs[2]) == ("France", "Paris")
    assert [e.source for e in exs] == [f"{path}:#0", f"{path}:#1", f"{path}:#2"]


def test_trex_rc_json_lines_same_records_with_line_sources():
    path = FIXTURES / "trex_rc.jsonl"
    exs = list(read_trex_rc(path))
    array = list(read_trex_rc(FIXTURES / "trex_rc.json"))[:2]
    assert [(e.text, e.subj_span, e.obj_span, e.label) for e in exs] == \
        [(e.text, e.subj_span, e.obj_span, e.label) for e in array]
    assert [e.source for e in exs] == [f"{path}:1", f"{path}:3"]  # line 2 is blank


def test_trex_rc_array_error_names_start_line_and_index(tmp_path):
    bad = dict(GOOD, obj_end=9)
    path = tmp_path / "train.json"
    path.write_text("[\n" + json.dumps(GOOD) + ",\n\n" + json.dumps(bad, indent=1) + "\n]\n")
    with pytest.raises(DataError, match=r"train\.json:4: record #1: object span \[3, 9\] outside 0\.\.4"):
        list(read_trex_rc(path))


@pytest.mark.parametrize("record, message", [
    ({k: v for k, v in GOOD.items() if k != "relation"}, "missing key 'relation'"),
    (dict(GOOD, subj_start=2, subj_end=1), "subject start 2 > end 1"),
    (dict(GOOD, subj_start=-1), r"subject span \[-1, 1\] outside"),
    (dict(GOOD, token=[]), "empty token list"),
    (dict(GOOD, obj_start="3"), "'obj_start' must be int"),
    (dict(GOOD, obj_start=1, obj_end=2), "overlap"),
    (dict(GOOD, relation=""), "'relation' is empty"),
])
def test_trex_rc_bad_records_raise_with_file_and_line(tmp_path, record, message):
    path = write_lines(tmp_path / "bad.jsonl", GOOD, record)
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{message}"):
        list(read_trex_rc(path))


def test_trex_rc_malformed_json_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", GOOD, GOOD, '{"token": ["a"], "subj_start": 0,')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON"):
        list(read_trex_rc(path))


def test_trex_rc_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"token": ["caf\xe9"]}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid UTF-8"):
        list(read_trex_rc(path))
    array = tmp_path / "bad.json"
    array.write_bytes(b"[\n" + json.dumps(GOOD).encode() + b",\n" + b'{"token": ["caf\xe9"]}\n]')
    with pytest.raises(DataError, match=r"bad\.json:3: invalid UTF-8"):
        list(read_trex_rc(array))


def test_trex_rc_file_level_errors(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(DataError, match="empty.json: file is empty"):
        list(read_trex_rc(empty))
    csv = tmp_path / "data.json"
    csv.write_text("token,relation\n")
    with pytest.raises(DataError, match=r"data\.json: expected a JSON array or JSON Lines"):
        list(read_trex_rc(csv))
    scalar = tmp_path / "scalar.json"
    scalar.write_text("[\n" + json.dumps(GOOD) + ",\n 7\n]")
    with pytest.raises(DataError, match=r"scalar\.json:3: record #1: expected a JSON object, got int"):
        list(read_trex_rc(scalar))
    broken = tmp_path / "broken.json"
    broken.write_text("[\n" + json.dumps(GOOD) + ",\n{\"token\": [}\n]")
    with pytest.raises(DataError, match=r"broken\.json:3: record #1: malformed JSON"):
        list(read_trex_rc(broken))


def test_trex_rc_skip_mode_counts_and_logs(tmp_path, caplog):
    path = write_lines(tmp_path / "mixed.jsonl", GOOD, "{oops", dict(GOOD, subj_end=7), GOOD,
                       dict(GOOD, obj_end=9))
    policy = ErrorPolicy("skip")
    with caplog.at_level(logging.WARNING):
        exs = list(read_trex_rc(path, policy))
    assert [e.source for e in exs] == [f"{path}:1", f"{path}:4"]
    assert policy.summary() == {"span out of range": 2, "malformed JSON": 1}
    assert policy.skipped == 3
    assert f"{path}: skipped 3 records (span out of range: 2, malformed JSON: 1)" in caplog.text
    assert f"{path}:2: malformed JSON" in caplog.text  # the first skips are logged one by one
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        policy.log_summary()
    assert "skipped 3 records (span out of range: 2, malformed JSON: 1)" in caplog.text


def test_policy_raise_is_default_and_modes_are_checked():
    err = DataError("f.jsonl", 3, "bad")
    with pytest.raises(DataError, match="f.jsonl:3: bad"):
        ErrorPolicy().handle(err)
    with pytest.raises(ValueError, match="on_error"):
        ErrorPolicy("ignore")  # type: ignore[arg-type]
    policy = ErrorPolicy("skip", max_warnings=0)
    policy.handle(err)
    assert policy.summary() == {"bad": 1}


# --------------------------------------------------------------------------- FewRel


def test_fewrel_exact_records():
    path = FIXTURES / "fewrel.json"
    exs = list(read_fewrel(path))
    assert [e.label for e in exs] == ["P177", "P177", "P19"]
    assert surfaces(exs[0]) == ("Cape Girardeau Bridge", "Mississippi River")
    assert exs[0].subj_span == (4, 25)
    assert surfaces(exs[1]) == ("Eads Bridge", "Mississippi")  # first mention of t is used
    assert surfaces(exs[2]) == ("Allan Peiper", "Alexandra")
    assert exs[1].source == f"{path}:P177#1"


@pytest.mark.parametrize("h, message", [
    (["x", "Q1", [[0, 2]]], r"first mention \[0, 2\] is not contiguous"),
    (["x", "Q1", [[5]]], r"h span \[5, 5\] outside 0\.\.2"),
    (["x", "Q1", []], "has no mention"),
    (["x", "Q1"], r"must be \[name, id"),
])
def test_fewrel_bad_mentions(tmp_path, h, message):
    inst = {"tokens": ["a", "b", "c"], "h": h, "t": ["c", "Q2", [[2]]]}
    path = tmp_path / "fewrel.json"
    path.write_text(json.dumps({"P1": [inst, inst]}))
    with pytest.raises(DataError, match=rf"fewrel\.json: relation 'P1' instance #0: .*{message}"):
        list(read_fewrel(path))
    policy = ErrorPolicy("skip")
    assert list(read_fewrel(path, policy)) == []
    assert policy.skipped == 2


def test_fewrel_malformed_document(tmp_path):
    path = tmp_path / "fewrel.json"
    path.write_text('{"P1": [\n{"tokens": ]}')
    with pytest.raises(DataError, match=r"fewrel\.json:2: malformed JSON"):
        list(read_fewrel(path))


# --------------------------------------------------------------------------- LAMA T-REx


def test_lama_trex_rebuilds_sentences():
    path = FIXTURES / "lama_trex" / "P19.jsonl"
    exs = list(read_lama_trex(path))
    assert len(exs) == 3 and {e.label for e in exs} == {"P19"}
    assert exs[0].text == ("Allan Peiper (born 26 April 1960 in Alexandra, Victoria, Australia) "
                           "is a former professional cyclist.")
    assert surfaces(exs[0]) == ("Allan Peiper", "Alexandra, Victoria")
    assert surfaces(exs[1]) == ("ALLAN PEIPER", "Alexandra")  # case-insensitive fallback
    assert surfaces(exs[2]) == ("Paul Mounsey", "Scottish")
    assert [e.source for e in exs] == [f"{path}:1#0", f"{path}:1#1", f"{path}:2#0"]


def test_lama_subject_not_inside_object():
    (ex,) = read_lama_trex(FIXTURES / "lama_trex" / "P138.jsonl")
    assert ex.text == "The Paris Airport is named after Paris."
    assert ex.obj_span == (4, 17) and ex.subj_span == (33, 38)


def _fact(*evidences) -> dict:
    return {"uuid": "u", "sub_label": "S", "obj_label": "O", "predicate_id": "P20",
            "evidences": list(evidences)}


def test_lama_bad_evidences_raise_or_are_counted(tmp_path, caplog):
    good = {"sub_surface": "Ann", "obj_surface": "Rome", "masked_sentence": "Ann died in [MASK]."}
    no_mask = dict(good, masked_sentence="Ann died in Rome.")
    missing = dict(good, sub_surface="Bob")
    nested = {"sub_surface": "Intel Pentium", "obj_surface": "Intel",
              "masked_sentence": "It used an [MASK] Pentium chip."}
    path = tmp_path / "P20.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(_fact(good, no_mask)) + "\n" + json.dumps(_fact(missing, good, nested))
                 + "\n{not json\n")
    with pytest.raises(DataError, match=r"P20\.jsonl\.gz:1: evidence #1: masked_sentence has no \[MASK\]"):
        list(read_lama_trex(path))
    policy = ErrorPolicy("skip")
    with caplog.at_level(logging.WARNING):
        exs = list(read_lama_trex(path, policy))
    assert [e.source for e in exs] == [f"{path}:1#0", f"{path}:2#1"]
    assert policy.summary() == {"subject not found in sentence": 2, "no [MASK] in sentence": 1,
                                "malformed JSON": 1}
    assert "P20.jsonl.gz:2: evidence #0: subject surface 'Bob' not found" in caplog.text
    assert f"{path}: skipped 4 records" in caplog.text


def test_lama_dir_and_relation_filter(tmp_path):
    directory = FIXTURES / "lama_trex"
    assert [e.label for e in read_lama_trex_dir(directory)] == ["P19"] * 3 + ["P138"]
    assert [e.label for e in read_lama_trex_dir(directory, relations=["P138"])] == ["P138"]
    with pytest.raises(DataError, match=r"no file for relation\(s\) P999"):
        list(read_lama_trex_dir(directory, relations=["P999"]))
    with pytest.raises(DataError, match="no P\\*.jsonl"):
        list(read_lama_trex_dir(tmp_path))


def test_lama_corrupt_gzip(tmp_path):
    path = tmp_path / "P1.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000)[:60])
    with pytest.raises(DataError, match="P1.jsonl.gz"):
        list(read_lama_trex(path, ErrorPolicy("skip")))


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_lama_relation_and_fewrel(data_dir):
    policy = ErrorPolicy("skip")
    exs = list(read_lama_trex_dir(data_dir / "lama" / "TREx", relations=["P19"], policy=policy))
    assert len(exs) == 2361 and policy.skipped == 0
    assert surfaces(exs[0]) == ("Allan Peiper", "Alexandra, Victoria")
    fewrel = list(read_fewrel(data_dir / "fewrel" / "val_wiki.json"))
    assert len(fewrel) == 11200 and len({e.label for e in fewrel}) == 16
