"""Strict CoNLL-U reader: basic trees only, every format violation named by file and line."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kadapt.data.conllu import read_conllu
from kadapt.data.policy import ErrorPolicy
from kadapt.core.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def row(tid: str, form: str, head: str, n_fields: int = 10) -> str:
    fields = [tid, form, form.lower(), "X", "_", "_", head, "dep", "_", "_"]
    return "\t".join(fields[:n_fields] + ["_"] * (n_fields - 10))


def sentence(*rows: str, comment: str = "# text = t") -> str:
    return "\n".join([comment, *rows]) + "\n\n"


OK = sentence(row("1", "Dogs", "2"), row("2", "bark", "0"))


def write(tmp_path: Path, text: str | bytes, name: str = "bad.conllu") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_fixture_multiword_tokens_and_empty_nodes():
    path = FIXTURES / "sample.conllu"
    first, second = read_conllu(path)
    # "didn't" (2-3) is not a node; its syntactic words "did" and "n't" are.
    assert first.words == ("I", "did", "n't", "see", "it", ".")
    assert first.heads == (4, 4, 4, 0, 4, 4)
    assert first.source == f"{path}:1"
    # the empty node 5.1 belongs to the enhanced graph only
    assert second.words == ("Sam", "likes", "tea", "and", "Kim", "coffee", ".")
    assert second.heads == (2, 0, 2, 5, 2, 5, 2)
    assert second.source == f"{path}:12"


def test_last_sentence_without_blank_line_and_crlf(tmp_path):
    text = OK + "1\tHi\thi\tX\t_\t_\t0\troot\t_\t_\r\n2\t!\t!\tX\t_\t_\t1\tpunct\t_\t_"
    exs = list(read_conllu(write(tmp_path, text, "ok.conllu")))
    assert [e.words for e in exs] == [("Dogs", "bark"), ("Hi", "!")]
    assert exs[1].heads == (0, 1)


@pytest.mark.parametrize("rows, line, message", [
    ([row("1", "Dogs", "x"), row("2", "bark", "0")], 2, "HEAD 'x' is not a non-negative integer"),
    ([row("1", "Dogs", "_"), row("2", "bark", "0")], 2, "HEAD '_'"),
    ([row("1", "Dogs", "5"), row("2", "bark", "0")], 2, r"HEAD 5 outside 0\.\.2"),
    ([row("1", "Dogs", "1"), row("2", "bark", "0")], 2, "word 1 is its own head"),
    ([row("1", "Dogs", "0"), row("2", "bark", "0")], 3, r"2 roots \(HEAD 0\); exactly one"),
    ([row("1", "Dogs", "2"), row("2", "bark", "1")], 1, "0 roots"),
    ([row("1", "Dogs", "2"), row("2", "bark", "3"), row("3", "x", "2"), row("4", "y", "0")], 3,
     "cycle"),
    ([row("1", "Dogs", "2", n_fields=9), row("2", "bark", "0")], 2, "expected 10 TAB-separated fields, got 9"),
    ([row("1", "Dogs", "2", n_fields=11), row("2", "bark", "0")], 2, "got 11"),
    ([row("1", "Dogs", "0"), row("3", "bark", "1")], 3, r"word ID 3 out of order \(expected 2\)"),
    ([row("2", "Dogs", "0")], 2, r"word ID 2 out of order \(expected 1\)"),
    ([row("1-1", "Dogs", "_"), row("1", "Dogs", "0")], 2, "multiword token range 1-1 is invalid"),
    ([row("1", "Dogs", "0"), row("3-4", "x", "_")], 3, "multiword token range 3-4 is invalid"),
    ([row("1", "Dogs", "0"), row("1-2", "x", "_")], 3, "multiword token range 1-2"),
    ([row("1", "Dogs", "0"), row("2.1", "x", "_")], 3, r"empty node 2\.1 out of order"),
    ([row("A", "Dogs", "0")], 2, "invalid ID 'A'"),
    ([row("1", "Dogs", "0"), "# late comment"], 3, "comment line after"),
    ([row("1", "", "0")], 2, "FORM is empty"),
])
def test_bad_sentences_name_file_and_line(tmp_path, rows, line, message):
    path = write(tmp_path, OK + sentence(*rows, comment="# sent_id = 2"))
    line += 4  # the first sentence takes lines 1-4
    with pytest.raises(DataError, match=rf"bad\.conllu:{line}: .*{message}"):
        list(read_conllu(path))


def test_multiword_range_past_last_word(tmp_path):
    path = write(tmp_path, sentence(row("1", "Dogs", "0"), row("2-3", "xy", "_"), row("2", "x", "1")))
    with pytest.raises(DataError, match=r"bad\.conllu:5: multiword token range goes past"):
        list(read_conllu(path))


def test_invalid_utf8_names_line(tmp_path):
    path = write(tmp_path, OK.encode() + b"1\tcaf\xe9\tx\tX\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(DataError, match=r"bad\.conllu:5: invalid UTF-8"):
        list(read_conllu(path))


def test_comment_only_block_is_an_empty_sentence(tmp_path):
    path = write(tmp_path, OK + "# newdoc\n\n" + OK)
    with pytest.raises(DataError, match=r"bad\.conllu:6: sentence has no words"):
        list(read_conllu(path))


def test_skip_mode_drops_whole_sentence_and_resumes(tmp_path, caplog):
    bad_head = sentence(row("1", "A", "9"), row("2", "B", "0"))
    wrong_fields = sentence(row("1", "A", "0", n_fields=8), row("2", "B", "1"))
    two_roots_at_end = "1\tA\ta\tX\t_\t_\t0\troot\t_\t_\n2\tB\tb\tX\t_\t_\t0\troot\t_\t_\n"
    path = write(tmp_path, OK + bad_head + OK + wrong_fields + OK + two_roots_at_end, "mixed.conllu")
    policy = ErrorPolicy("skip")
    with caplog.at_level(logging.WARNING):
        exs = list(read_conllu(path, policy))
    assert [e.source for e in exs] == [f"{path}:1", f"{path}:9", f"{path}:17"]
    assert policy.summary() == {"bad head": 1, "wrong field count": 1, "root count": 1}
    assert f"{path}: skipped 3 records" in caplog.text
    assert f"{path}:6: HEAD 9 outside 0..2" in caplog.text


@pytest.mark.realdata
def test_real_ud_english_ewt_dev(data_dir):
    policy = ErrorPolicy("skip")
    exs = list(read_conllu(data_dir / "ud_english_ewt" / "en_ewt-ud-dev.conllu", policy))
    assert policy.skipped == 0
    assert len(exs) == 2001
    assert sum(len(e.words) for e in exs) == 25147
    assert all(e.heads.count(0) == 1 for e in exs)
