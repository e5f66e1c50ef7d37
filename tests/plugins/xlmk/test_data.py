"""The multilingual knowledge format: reading, cross-lingual pairing, bad input (errors name file and line)."""
from __future__ import annotations

import json
import logging

import pytest
from xlmk_kit import FIXTURE

from kadapt.plugins.xlmk.data import (
    KnowledgeWriter,
    MentionExample,
    TripleExample,
    pick_language,
    read_knowledge,
)
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError, KadaptError


def _write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                                       for r in rows), encoding="utf-8")


def _knowledge(tmp_path, mentions=(), descriptions=(), triples=()):
    folder = tmp_path / "kb"
    _write(folder, "descriptions.jsonl", descriptions)
    if mentions:
        _write(folder, "mentions.jsonl", mentions)
    if triples:
        _write(folder, "triples.jsonl", triples)
    return folder


DESC = [{"entity": "Q1", "lang": "en", "text": "Paris"}, {"entity": "Q1", "lang": "de", "text": "Paris (Stadt)"},
        {"entity": "Q2", "lang": "en", "text": "France"}]


def test_fixture_interleaves_tasks_and_pairs_other_languages():
    records = read_records("xlmk_knowledge", FIXTURE)
    assert len(records) == 26
    assert [type(r).__name__[0] for r in records[:4]] == ["M", "T", "M", "T"]
    mentions = [r for r in records if isinstance(r, MentionExample)]
    triples = [r for r in records if isinstance(r, TripleExample)]
    assert len(mentions) == 16 and len(triples) == 10
    assert all(m.description_lang != m.lang for m in mentions)  # every fixture entity has another language
    assert all(t.subject_lang != t.object_lang for t in triples)
    first = mentions[0]
    assert first.text[first.span[0]:first.span[1]] == "Paris" and first.source.endswith("mentions.jsonl:1")
    # the language choice is a stable function of the file position: reading again gives the same
    assert read_records("xlmk_knowledge", FIXTURE) == records
    assert read_records("xlmk_knowledge", FIXTURE, limit=5) == records[:5]


def test_pick_language_prefers_another_language_and_falls_back():
    assert pick_language(["en"], "en", "k") == "en"
    assert pick_language(["de", "en"], "en", "k") == "de"
    assert pick_language(["de", "en", "fr"], "en", "k") in ("de", "fr")
    assert pick_language(["de", "en"], None, "k") in ("de", "en")


def test_mention_whose_entity_has_no_description(tmp_path, caplog):
    folder = _knowledge(tmp_path, descriptions=DESC, mentions=[
        {"text": "Paris is nice", "start": 0, "end": 5, "entity": "Q1", "lang": "en"},
        {"text": "Lyon is nice", "start": 0, "end": 4, "entity": "Q99", "lang": "en"}])
    with pytest.raises(DataError, match=r"mentions.jsonl:2: mention entity 'Q99' has no description in .*descriptions.jsonl"):
        list(read_knowledge(folder))
    policy = ErrorPolicy("skip")
    with caplog.at_level(logging.WARNING):
        records = list(read_knowledge(folder, policy))
    assert len(records) == 1 and policy.summary() == {"mention entity 'Q99' has no description in "
                                                      f"{folder / 'descriptions.jsonl'}": 1}
    assert "skipped 1 records" in caplog.text


def test_language_codes_unseen_and_malformed(tmp_path):
    # a well-formed code seen nowhere else is accepted: no other-language description → its own
    folder = _knowledge(tmp_path, descriptions=DESC + [{"entity": "Q3", "lang": "xh", "text": "iParis"}], mentions=[
        {"text": "iParis yinhle", "start": 0, "end": 6, "entity": "Q3", "lang": "xh"},
        {"text": "Paris ist schön", "start": 0, "end": 5, "entity": "Q1", "lang": "sw"}])
    records = list(read_knowledge(folder))
    assert records[0].description_lang == "xh" and records[0].description == "iParis"
    assert records[1].description_lang in ("en", "de")
    bad = _knowledge(tmp_path / "bad", descriptions=DESC, mentions=[
        {"text": "Paris", "start": 0, "end": 5, "entity": "Q1", "lang": "English"}])
    with pytest.raises(DataError, match=r"mentions.jsonl:1: bad language code 'English'"):
        list(read_knowledge(bad))


@pytest.mark.parametrize("row,message", [
    ({"text": "Paris", "start": 2, "end": 9, "entity": "Q1", "lang": "en"}, r"mention span \[2, 9\) outside the 5-character text"),
    ({"text": "", "start": 0, "end": 1, "entity": "Q1", "lang": "en"}, "key 'text' must be a non-empty string"),
    ("{not json", "malformed JSON"),
    ('["a list"]', "expected a JSON object"),
])
def test_bad_mention_lines(tmp_path, row, message):
    folder = _knowledge(tmp_path, descriptions=DESC, mentions=[row])
    with pytest.raises(DataError, match=r"mentions.jsonl:1: " + message):
        list(read_knowledge(folder))


def test_triples_need_descriptions_and_duplicates_are_errors(tmp_path):
    folder = _knowledge(tmp_path, descriptions=DESC, triples=[{"subject": "Q1", "relation": "P17", "object": "Q2"},
                                                             {"subject": "Q1", "relation": "P17", "object": "Q7"}])
    with pytest.raises(DataError, match=r"triples.jsonl:2: object entity 'Q7' has no description"):
        list(read_knowledge(folder))
    dup = _knowledge(tmp_path / "dup", descriptions=DESC + [DESC[0]], triples=[{"subject": "Q1", "relation": "P", "object": "Q2"}])
    with pytest.raises(DataError, match=r"descriptions.jsonl:4: second description of entity 'Q1' in language 'en'"):
        list(read_knowledge(dup))


def test_folder_errors(tmp_path):
    with pytest.raises(KadaptError, match="multilingual knowledge folder"):
        list(read_knowledge(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KadaptError, match="neither mentions.jsonl nor triples.jsonl"):
        list(read_knowledge(tmp_path / "empty"))


def test_writer_round_trip(tmp_path):
    writer = KnowledgeWriter.empty()
    writer.add_description("Q1", "en", "Paris")
    writer.add_description("Q1", "en", "ignored: the first description wins")
    writer.add_description("Q1", "fr", "  ")  # blank: not stored
    writer.add_description("Q1", "fr", "Paris (ville)")
    writer.add_mention("Visit Paris", 6, 11, "Q1", "en")
    writer.add_triple("Q1", "P31", "Q1")
    assert writer.write(tmp_path / "kb") == {"mentions": 1, "descriptions": 2, "triples": 1}
    mention, triple = list(read_knowledge(tmp_path / "kb"))
    assert mention.description == "Paris (ville)" and mention.description_lang == "fr"
    assert {triple.subject_lang, triple.object_lang} == {"en", "fr"}
