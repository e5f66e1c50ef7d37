"""KG readers: KG-BERT TSV, CoDEx, DBP15K, Wikidata5M layouts; bad lines name file and line."""
from __future__ import annotations

import json
import logging

import pytest

from kadapt.core.errors import DataError, KadaptError
from kadapt.kg import read_kg
from kadapt.kg.readers import read_kg_triples

TINY = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "kg_tiny"


def test_kgbert_fixture():
    g = read_kg(TINY)
    assert (g.num_entities, g.num_relations, g.num_triples) == (12, 4, 15)
    assert g.entity_names[0] == "paris" and g.entity_texts()[0][1] == "paris, the capital of france"
    assert g.relation_names[0] == "capital of" and g.stats["self_loops"] == 1
    assert g.category_labels() == ["animal", "artifact", "group", "location", "person"]
    assert len(read_kg_triples(TINY)) == 15


def test_unknown_entity_is_an_error_with_file_and_line_or_a_counted_skip(tmp_path, caplog):
    for f in TINY.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    with open(tmp_path / "train.tsv", "a") as fh:
        fh.write("e01\t_capital_of\tnowhere\n")
    with pytest.raises(DataError, match=r"train\.tsv:14: triple names unknown entity 'nowhere'"):
        read_kg(tmp_path)
    with caplog.at_level(logging.WARNING):
        g = read_kg(tmp_path, policy="skip")
    assert g.num_triples == 15 and g.stats["skipped_triples"] == 1 and "skipped 1 records" in caplog.text
    (tmp_path / "train.tsv").write_text("e01\t_capital_of\n")
    with pytest.raises(DataError, match=r"train\.tsv:1: expected 3 tab-separated fields"):
        read_kg(tmp_path)
    (tmp_path / "train.tsv").write_bytes(b"e01\t_capital_of\t\xff\n")
    with pytest.raises(DataError, match=r"train\.tsv:1: not UTF-8"):
        read_kg(tmp_path)


def test_kgbert_unknown_relation_and_empty_kg(tmp_path):
    (tmp_path / "train.tsv").write_text("")
    (tmp_path / "entity2text.txt").write_text("")
    with pytest.raises(KadaptError, match="no entities"):
        read_kg(tmp_path)
    with pytest.raises(KadaptError, match="cannot tell the KG format"):
        read_kg(tmp_path / "..")
    with pytest.raises(KadaptError, match="not found"):
        read_kg(tmp_path / "missing")


def test_codex_layout(tmp_path):
    (tmp_path / "triples").mkdir()
    (tmp_path / "triples" / "train.txt").write_text("Q1\tP19\tQ2\nQ2\tP17\tQ3\n")
    (tmp_path / "triples" / "test_negatives.txt").write_text("Q1\tP17\tQ9\n")
    (tmp_path / "relations").mkdir()
    (tmp_path / "relations" / "relations.en.json").write_text(json.dumps({"P19": {"label": "place of birth", "description": "where born"}}))
    (tmp_path / "types").mkdir()
    (tmp_path / "types" / "entity2types.json").write_text(json.dumps({"Q1": ["Q5"], "Q2": ["Q515"]}))
    (tmp_path / "types" / "types.en.json").write_text(json.dumps({"Q5": {"label": "human"}}))
    g = read_kg(tmp_path)
    assert g.entity_ids == ["Q1", "Q2", "Q3"] and g.num_triples == 2  # negatives are not facts
    assert g.relation_ids == ["P19", "P17"] and g.relation_texts(False)[0] == ("place of birth", "place of birth, where born")
    assert g.entity_categories == ["human", "Q515", None] and g.stats["entities_without_description"] == 3


def test_dbp15k_layout(tmp_path):
    (tmp_path / "ent_ids_1").write_text("0\thttp://fr.dbpedia.org/resource/Saint_Joseph\n1\thttp://fr.dbpedia.org/resource/Paris\n")
    (tmp_path / "rel_ids_1").write_text("7\thttp://fr.dbpedia.org/property/pays\n")
    (tmp_path / "triples_1").write_text("0\t7\t1\n")
    g = read_kg(tmp_path)
    assert g.entity_names == ["Saint Joseph", "Paris"] and g.relation_names == ["pays"] and g.triples.tolist() == [[0, 0, 1]]
    with pytest.raises(KadaptError, match="side must be 1 or 2"):
        read_kg(tmp_path, side=3)


def test_wikidata5m_layout(tmp_path):
    (tmp_path / "wikidata5m_entity.txt").write_text("Q1\tuniverse\tcosmos\nQ2\tearth\tblue planet\n")
    (tmp_path / "wikidata5m_relation.txt").write_text("P361\tpart of\n")
    (tmp_path / "wikidata5m_text.txt").write_text("Q1\tThe universe is all of space and time.\n")
    (tmp_path / "wikidata5m_transductive_train.txt").write_text("Q2\tP361\tQ1\n")
    g = read_kg(tmp_path)
    assert g.entity_names == ["universe", "earth"] and g.entity_texts()[0] == ("universe", "universe, The universe is all of space and time.")
    assert g.triples.tolist() == [[1, 0, 0]] and g.stats["entities_without_description"] == 1


@pytest.mark.realdata
def test_real_wn18rr_and_umls(data_dir):
    g = read_kg(data_dir / "kg_wn18rr")
    assert (g.num_entities, g.num_relations, g.num_triples) == (40943, 11, 93003)
    assert len(g.category_labels()) == 45 and g.stats["entities_without_category"] == 75
    u = read_kg(data_dir / "kg_umls")
    assert (u.num_entities, u.num_relations) == (135, 46)
