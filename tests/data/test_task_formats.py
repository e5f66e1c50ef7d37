"""Task readers on fixtures in the official formats, and their errors on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def test_cosmosqa():
    records = read_records("cosmosqa", FIX / "cosmosqa.jsonl")
    assert [r.label for r in records] == [1, 3, 0]  # int or digit-string labels
    assert len(records[0].choices) == 4 and records[0].question.startswith("In the future")
    assert read_records("cosmosqa", FIX / "cosmosqa_test.jsonl")[0].label is None


def test_cosmosqa_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.loads((FIX / "cosmosqa.jsonl").read_text().splitlines()[0])
    bad.write_text(json.dumps({**good, "label": 7}) + "\n{not json\n" + json.dumps({**good, "answer2": ""}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: label must be 0..3, got 7"):
        read_records("cosmosqa", bad)
    policy = ErrorPolicy("skip")
    assert read_records("cosmosqa", bad, policy) == []
    assert policy.skipped == 3


def test_squad_and_mlqa():
    records = read_records("squad", FIX / "squad_v1.json")
    assert [r.id for r in records][-1] == "p1" and len(records) == 4
    for r in records:
        for text, start in r.answers:
            assert r.context[start:start + len(text)] == text
        assert r.language == "en"
    de = read_records("mlqa", FIX / "mlqa" / "dev-context-de-question-de.json")
    assert {r.language for r in de} == {"de"} and de[1].answers == (("an der Spree", 59),)


def test_squad_answer_offset_mismatch_names_the_question(tmp_path):
    doc = json.loads((FIX / "squad_v1.json").read_text())
    doc["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"data\[1\].paragraphs\[0\].qas\[0\].answers\[0\] \(id p1\): context\[3:9\]"):
        read_records("squad", path)
    path.write_text('{"data": [}')
    with pytest.raises(DataError, match="dev-v1.1.json:1: malformed JSON"):
        read_records("squad", path)


def test_xnli_dev_and_mt_train():
    dev = read_records("xnli", FIX / "xnli.dev.tsv")
    assert [(r.language, r.label) for r in dev] == [("en", "neutral"), ("en", "contradiction"),
                                                     ("en", "entailment"), ("de", "entailment")]
    assert dev[0].text_a == "And he said, Mama, I'm home."
    train = read_records("xnli", FIX / "multinli.train.en.tsv")
    assert [r.label for r in train] == ["neutral", "entailment", "contradiction"]  # contradictory mapped


def test_xnli_errors(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("premise\thypo\tlabel\na\tb\tmaybe\na\tb\n")
    with pytest.raises(DataError, match=r"x.tsv:2: unknown label 'maybe'"):
        read_records("xnli", path)
    policy = ErrorPolicy("skip")
    assert read_records("xnli", path, policy) == [] and policy.skipped == 2
    path.write_text("a\tb\n")
    with pytest.raises(DataError, match="x.tsv:1: header must name"):
        read_records("xnli", path)


def test_conll_ner():
    records = read_records("conll_ner", FIX / "conll2003.txt")
    assert [len(r.words) for r in records] == [9, 2, 2]
    assert records[0].tags[:3] == ("B-ORG", "O", "B-MISC") and records[1].source.endswith("conll2003.txt:13")


def test_conll_ner_bad_tag_drops_the_whole_sentence(tmp_path):
    path = tmp_path / "ner.txt"
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP X-Y\n\nPeter NNP B-NP B-PER\n")
    with pytest.raises(DataError, match=r"ner.txt:2: tag 'X-Y' is not O or B-/I-/E-/S-TYPE"):
        read_records("conll_ner", path)
    policy = ErrorPolicy("skip")
    assert [r.words for r in read_records("conll_ner", path, policy)] == [("Peter",)]
    assert policy.skipped == 1


def test_conllu_upos(tmp_path):
    records = read_records("conllu_upos", FIX / "sample.conllu")
    assert records and all(len(r.words) == len(r.tags) for r in records)
    path = tmp_path / "bad.conllu"
    path.write_text("1\tHi\thi\tINTJX\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(DataError, match=r"bad.conllu:1: UPOS 'INTJX' is not one of the 17 UD tags"):
        read_records("conllu_upos", path)


def test_lama_cloze_folder_and_squad_file():
    records = read_records("lama_cloze", FIX / "lama")
    assert [r.text for r in records[:2]] == ["Barack Obama was born in [MASK] .", "Marie Curie was born in [MASK] ."]
    assert [r.relation for r in records] == ["P19"] * 3 + ["P36"] * 2
    assert records[3].text == "The capital of France is [MASK] ." and records[3].answer == "Paris"
    single = read_records("lama_cloze", FIX / "lama" / "TREx" / "P36.jsonl")  # templates found one folder up
    assert len(single) == 2
    squad = read_records("lama_cloze", FIX / "lama" / "Squad" / "test.jsonl")
    assert squad[0].text == "Paris is the capital of [MASK] ." and squad[0].answer == "France"


def test_lama_cloze_without_template(tmp_path):
    path = tmp_path / "P999.jsonl"
    path.write_text(json.dumps({"uuid": "u", "obj_label": "x", "sub_label": "y", "predicate_id": "P999"}) + "\n")
    with pytest.raises(DataError, match=r"P999.jsonl:1: relation 'P999' has no template"):
        read_records("lama_cloze", path)


def test_text_lines_skip_wikitext_headings(tmp_path):
    path = tmp_path / "wiki.train.raw"
    path.write_text(" \n = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 is a game .\n = = Gameplay = = \n"
                    " It is played in real time .\n")
    records = read_records("text_lines", path)
    assert [r.words[:2] for r in records] == [("Senjō", "no"), ("It", "is")]
    assert records[1].source.endswith("wiki.train.raw:6")
