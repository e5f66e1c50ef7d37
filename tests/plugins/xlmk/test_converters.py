"""Converters: mParaRel, LAMA T-REx and DBP15K layouts → the multilingual knowledge format."""
from __future__ import annotations

import gzip
import json

import pytest

from kadapt.plugins.xlmk.data import MentionExample, TripleExample, read_knowledge
from kadapt.plugins.xlmk.converters import (
    convert_dbp15k,
    convert_lama_trex,
    convert_mpararel,
    dbpedia_name,
    fill_template,
    in_part,
    read_knowledge_source,
)
from kadapt.core.errors import DataError


def _gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _mpararel(root):
    facts = {"en": [("Q1", "Q2", "Dante", "Florence", 0), ("Q3", "Q4", "Goethe", "Frankfurt", 1)],
             "de": [("Q1", "Q2", "Dante", "Florenz", 0), ("Q3", "Q4", "Goethe", "Frankfurt am Main", 1)]}
    for lang, rows in facts.items():
        _gz(root / "tuples" / lang / "P19.jsonl.gz", [
            {"sub_uri": s, "obj_uri": o, "sub_label": sl, "obj_label": ol, "lineid": i} for s, o, sl, ol, i in rows])
    (root / "patterns" / "en").mkdir(parents=True)
    (root / "patterns" / "de").mkdir(parents=True)
    (root / "patterns" / "en" / "P19.jsonl").write_text(
        json.dumps({"pattern": "[X] was born in [Y]", "checked-by-human": True}) + "\n"
        + json.dumps({"pattern": "[X] is from", "checked-by-human": True}) + "\n")
    (root / "patterns" / "de" / "P19.jsonl").write_text(
        json.dumps({"pattern": "In [Y] wurde [X] geboren", "checked-by-human": False}) + "\n")
    return root


def test_fill_template_in_both_orders():
    assert fill_template("[X] was born in [Y] .", "Dante", "Florence") == ("Dante was born in Florence .", 18, 26)
    text, start, end = fill_template("In [Y] wurde [X] geboren", "Dante", "Florenz")
    assert text == "In Florenz wurde Dante geboren" and text[start:end] == "Florenz"


def test_convert_mpararel_and_bad_template_is_reported(tmp_path):
    root = _mpararel(tmp_path / "mpararel")
    with pytest.raises(DataError, match=r"patterns/en/P19.jsonl:2: template needs one \[X\] and one \[Y\]"):
        convert_mpararel(root, ("en", "de"))
    writer = convert_mpararel(root, ("en", "de"), policy="skip")
    writer.write(tmp_path / "kb")
    records = list(read_knowledge(tmp_path / "kb"))
    mentions = [r for r in records if isinstance(r, MentionExample)]
    assert sorted(m.text for m in mentions) == ["Dante was born in Florence", "Goethe was born in Frankfurt",
                                                "In Florenz wurde Dante geboren", "In Frankfurt am Main wurde Goethe geboren"]
    for m in mentions:  # the object is the mention; its description is its label in the other language
        assert m.entity in ("Q2", "Q4") and m.description_lang != m.lang
    florence = next(m for m in mentions if m.lang == "en" and m.entity == "Q2")
    assert florence.description == "Florenz"
    triples = [r for r in records if isinstance(r, TripleExample)]
    assert sorted((t.subject, t.relation, t.object) for t in triples) == [("Q1", "P19", "Q2"), ("Q3", "P19", "Q4")]
    # held-out parts are disjoint and complete, and agree across languages (same fact → same part)
    train = convert_mpararel(root, ("en", "de"), part="train", holdout=0.5, policy="skip").triples
    test = convert_mpararel(root, ("en", "de"), part="test", holdout=0.5, policy="skip").triples
    assert sorted(map(str, train + test)) == sorted(map(str, writer.triples))
    assert in_part("P19", 0, "test", 0.5) != in_part("P19", 0, "train", 0.5)


def test_convert_lama_trex_with_mpararel_labels(tmp_path):
    _gz(tmp_path / "lama" / "TREx" / "P19.jsonl.gz", [
        {"sub_uri": "Q1", "obj_uri": "Q2", "sub_label": "Dante", "obj_label": "Florence", "predicate_id": "P19",
         "evidences": [{"sub_surface": "Dante", "obj_surface": "Florence",
                        "masked_sentence": "Dante was born in [MASK] in 1265."}]},
        {"sub_uri": "Q3", "obj_uri": "Q4", "sub_label": "X", "obj_label": "Y", "predicate_id": "P19",
         "evidences": [{"sub_surface": "X", "obj_surface": "Y", "masked_sentence": "no mask here"}]}])
    with pytest.raises(DataError, match=r"P19.jsonl.gz:2: evidence needs one \[MASK\]"):
        convert_lama_trex(tmp_path / "lama")
    writer = convert_lama_trex(tmp_path / "lama", mpararel=_mpararel(tmp_path / "mp"), policy="skip")
    assert writer.mentions == [
        {"text": "Dante was born in Florence in 1265.", "start": 18, "end": 26, "entity": "Q2", "lang": "en"},
        {"text": "Dante was born in Florence in 1265.", "start": 0, "end": 5, "entity": "Q1", "lang": "en"}]
    assert writer.descriptions[("Q2", "de")] == "Florenz"  # other-language label from mParaRel


def _dbp15k(root):
    root.mkdir(parents=True)
    files = {
        "ent_ids_1": "0\thttp://fr.dbpedia.org/resource/Allemagne\n1\thttp://fr.dbpedia.org/resource/Berlin\n"
                     "2\thttp://fr.dbpedia.org/resource/Fran%C3%A7ois_Hollande\n",
        "ent_ids_2": "10\thttp://dbpedia.org/resource/Germany\n11\thttp://dbpedia.org/resource/Berlin\n"
                     "12\thttp://dbpedia.org/resource/Fran%C3%A7ois_Hollande\n",
        "rel_ids_1": "0\thttp://fr.dbpedia.org/property/capitale\n",
        "rel_ids_2": "5\thttp://dbpedia.org/property/capital\n",
        "triples_1": "0\t0\t1\n", "triples_2": "10\t5\t11\n",
        "sup_pairs": "0\t10\n", "ref_pairs": "1\t11\n2\t12\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_convert_dbp15k_merges_seed_pairs_only(tmp_path):
    writer, data = convert_dbp15k(_dbp15k(tmp_path / "fr_en"))
    assert data.lang == "fr" and data.test_pairs == [(1, 11), (2, 12)]
    germany = "http://dbpedia.org/resource/Germany"
    assert writer.descriptions[(germany, "fr")] == "Allemagne" and writer.descriptions[(germany, "en")] == "Germany"
    # test-pair entities stay separate (no leak of the alignment to be evaluated)
    assert writer.descriptions[("http://fr.dbpedia.org/resource/Berlin", "fr")] == "Berlin"
    assert ("http://fr.dbpedia.org/resource/Berlin", "en") not in writer.descriptions
    assert writer.triples[0] == {"subject": germany, "relation": "http://fr.dbpedia.org/property/capitale",
                                 "object": "http://fr.dbpedia.org/resource/Berlin"}
    assert writer.mentions == []
    assert dbpedia_name("http://fr.dbpedia.org/resource/Fran%C3%A7ois_Hollande") == "François Hollande"
    records = read_knowledge_source(tmp_path / "fr_en")  # the recipe path: converted on the fly
    assert len(records) == 2 and all(isinstance(r, TripleExample) for r in records)
    assert "(converted)" in records[0].source and str(tmp_path / "fr_en") in records[0].source


def test_dbp15k_bad_line_names_file_and_line(tmp_path):
    root = _dbp15k(tmp_path / "zh_en")
    (root / "triples_1").write_text("0\t0\t1\n0\t0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"triples_1:2: expected 3 tab-separated columns, got 2"):
        convert_dbp15k(root)


@pytest.mark.realdata
def test_real_dbp15k_and_mpararel_counts(data_dir):
    writer, data = convert_dbp15k(data_dir / "dbp15k" / "fr_en", max_triples=1000)
    assert len(data.seed_pairs) == 4500 and len(data.test_pairs) == 10500
    assert len(writer.triples) == 1000
    # 19,661 + 19,993 entities, 4,500 seed pairs merged into one entity with two names
    assert len({e for e, _ in writer.descriptions}) == 19661 + 19993 - 4500
    mp = convert_mpararel(data_dir / "mpararel", ("en", "de", "fr", "zh-hans"), relations={"P19"})
    langs = {m["lang"] for m in mp.mentions}
    assert langs == {"en", "de", "fr", "zh-hans"} and len(mp.triples) > 900
