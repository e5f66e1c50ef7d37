"""Linked mentions: reader ids (FewRel, LAMA T-REx), the dictionary linker, token_entities, bad inputs."""
from __future__ import annotations

import gzip
import json
import logging

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.data.encoding import encode_relation
from kadapt.data.mentions import EntityLinking, LinkStats, Mention, token_entities
from kadapt.data.records import RelationExample
from kadapt.data.relations import read_fewrel, read_lama_trex
from kadapt.kg import KnowledgeGraph
from kadapt.plugins.jaket.linker import DictionaryLinker, EntityLinker, LinkerConfig, linker_scores

ENTITIES = [("Q76", "Barack Obama", "44th US president"), ("Q782", "Hawaii", "US state"),
            ("Q90", "Paris", "capital of France"), ("Q142", "France", ""),
            ("Q60", "New York", "city"), ("Q1297", "New York City", "largest US city")]


def graph() -> KnowledgeGraph:
    return KnowledgeGraph.build(ENTITIES, [("P19", "place of birth", None)], [(0, 0, 1)], source="g")


def rows() -> dict[str, int]:
    g = graph()
    return {e: i for i, e in enumerate(g.entity_ids)}


def test_readers_carry_wikidata_ids(tmp_path):
    fewrel = tmp_path / "fewrel.json"
    fewrel.write_text(json.dumps({"P19": [{"tokens": ["Obama", "was", "born", "in", "Hawaii", "."],
                                           "h": ["obama", "Q76", [[0]]], "t": ["hawaii", "Q782", [[4]]]}]}))
    ex = next(read_fewrel(fewrel))
    assert (ex.subj_id, ex.obj_id, ex.text[slice(*ex.obj_span)]) == ("Q76", "Q782", "Hawaii")
    lama = tmp_path / "P19.jsonl.gz"
    fact = {"sub_uri": "Q76", "obj_uri": "http://www.wikidata.org/entity/Q782", "predicate_id": "P19",
            "evidences": [{"sub_surface": "Obama", "obj_surface": "Hawaii", "masked_sentence": "Obama was born in [MASK] ."}]}
    with gzip.open(lama, "wt") as fh:
        fh.write(json.dumps(fact) + "\n")
    ex = next(read_lama_trex(lama))
    assert (ex.subj_id, ex.obj_id, ex.subj_span, ex.obj_span) == ("Q76", "Q782", (0, 5), (18, 24))


def test_link_longest_match_case_folded_at_word_boundaries():
    linker = DictionaryLinker.from_graph(graph())
    text = "In new york city, barack OBAMA met Parisians from Paris and France."
    found = [(text[m.start:m.end], m.entity_id) for m in linker(text)]
    # longest name wins ("new york city" over "new york"); "Parisians" is not "Paris" (word boundary)
    assert found == [("new york city", "Q1297"), ("barack OBAMA", "Q76"), ("Paris", "Q90"), ("France", "Q142")]
    assert isinstance(linker, EntityLinker)


def test_link_is_deterministic_first_entity_wins_and_aliases_count():
    g = KnowledgeGraph.build([("Q1", "Georgia", ""), ("Q2", "Georgia", ""), ("Q3", "Tbilisi", "")], [], [], source="g")
    linker = DictionaryLinker.from_graph(g, aliases={"Q3": ["Tiflis"], "Q999": ["Nowhere"]})
    assert linker.ambiguous == 1
    text = "Tiflis is in Georgia; Nowhere is not."
    assert linker(text) == [Mention(0, 6, "Q3"), Mention(13, 20, "Q1")]  # alias of a KG entity only
    assert linker(text) == DictionaryLinker.from_graph(g, aliases={"Q3": ["Tiflis"]})(text)


def test_link_config_min_chars_skip_names_and_case():
    g = KnowledgeGraph.build([("Q1", "US", ""), ("Q2", "The", ""), ("Q3", "Apple", "")], [], [], source="g")
    assert [m.entity_id for m in DictionaryLinker.from_graph(g)("The US and apple")] == ["Q3"]
    strict = DictionaryLinker.from_graph(g, config=LinkerConfig(min_chars=2, case_fold=False, skip_names=()))
    assert [m.entity_id for m in strict("The US and apple")] == ["Q2", "Q1"]
    with pytest.raises(KadaptError, match="recipe: unknown linker key.*'min_len'"):
        LinkerConfig.from_dict({"min_len": 2}, "recipe")


def test_link_scores_precision_and_recall_on_gold_mentions():
    linker = DictionaryLinker.from_graph(graph())
    examples = [RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "", "Q76", "Q782"),
                RelationExample("Obama lived in New York City .", (0, 5), (15, 23), "P551", "", "Q76", "Q60"),
                RelationExample("no ids here", (0, 2), (3, 6), "P1")]
    scores = linker_scores(linker, examples)
    # gold: 4 mentions; found exactly: Obama(0,12), Hawaii -> 2; "New York City" overlaps gold "New York"
    # with a different span -> judged wrong; "Obama" alone is not a name -> missed
    assert scores["gold_mentions"] == 4 and scores["recall"] == 0.5
    assert scores["predicted_on_gold"] == 3 and scores["precision"] == pytest.approx(2 / 3)
    assert scores["span_recall"] == 0.5


def test_link_user_supplied_linker_plugs_in(tiny_backbone):
    def my_linker(text):  # e.g. a spaCy pipeline wrapped as text -> [Mention]
        at = text.find("Paris")
        return [Mention(at, at + 5, "Q90")] if at >= 0 else []

    ex = RelationExample("Obama visited Paris with Hawaii friends .", (0, 5), (25, 31), "P1")
    linking = EntityLinking(rows(), linker=my_linker)
    feats = encode_relation(ex, tiny_backbone.tokenizer, 64, linking=linking)
    tokens = tiny_backbone.tokenizer.convert_ids_to_tokens(feats["input_ids"])
    assert [tokens[i] for i, r in enumerate(feats["token_entities"]) if r >= 0] == ["paris"]
    assert set(feats["token_entities"]) == {-1, rows()["Q90"]}
    # no ids on the record: subject and object are not linked (the linker found neither)
    assert (linking.stats.instances, linking.stats.instances_any, linking.stats.instances_all) == (1, 0, 0)


def test_encode_relation_maps_reader_ids_to_mention_tokens(tiny_backbone):
    ex = RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "x:1", "Q76", "Q782")
    linking = EntityLinking(rows())
    feats = encode_relation(ex, tiny_backbone.tokenizer, 64, linking=linking)
    ents = feats["token_entities"]
    assert len(ents) == len(feats["input_ids"])
    subj = ents[feats["subj_pos"] + 1:feats["subj_end"]]
    obj = ents[feats["obj_pos"] + 1:feats["obj_end"]]
    assert set(subj) == {rows()["Q76"]} and set(obj) == {rows()["Q782"]}
    assert sum(r >= 0 for r in ents) == len(subj) + len(obj)  # markers and other tokens stay -1
    assert linking.stats.coverage()["all_linked"] == 1.0


def test_bad_mentions_are_counted_and_logged_once(caplog):
    offsets = [(0, 0), (0, 6), (7, 12), (13, 16), (17, 23), (0, 0)]
    special = [1, 0, 0, 0, 0, 1]
    stats = LinkStats(split="dev")
    mentions = [Mention(0, 12, "Q76"),    # linked
                Mention(7, 12, "Q782"),   # overlaps the longer one: dropped
                Mention(17, 40, "Q90"),   # runs past the sentence (length 23)
                Mention(13, 16, "Q404"),  # id unknown to the KG
                Mention(17, 23, "Q142")]  # linked
    out = token_entities(offsets, special, 23, mentions, rows(), stats)
    assert out == [-1, 0, 0, -1, 3, -1]
    assert stats.dropped == {"overlapping": 1, "outside_text": 1, "unknown_id": 1} and stats.linked == 2
    cut = token_entities(offsets[:3], special[:3], 23, [Mention(17, 23, "Q142")], rows(), stats)
    assert cut == [-1, -1, -1] and stats.dropped["truncated"] == 1
    stats.instance([True, True])
    stats.instance([False, True])
    with caplog.at_level(logging.INFO):
        stats.log_once()
        stats.log_once()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "entity linking" in r.getMessage()]
    assert lines == [("WARNING", "entity linking dev: 2 instances, 100.0% with >=1 and 50.0% with every target "
                                 "linked; 2/6 mentions linked; dropped: outside_text 1, overlapping 1, truncated 1, "
                                 "unknown_id 1 (e.g. Q404)")]


def test_link_bad_mentions_through_a_run_split_are_one_line_per_split(tiny_backbone, caplog):
    """Reader records whose ids the KG lacks, and a linker that returns a span past the sentence and two
    overlapping spans: every instance still encodes; each split logs exactly one line."""
    def sloppy_linker(text):  # a span past the end of the text; "Paris" and "Par" overlap
        return [Mention(len(text) + 2, len(text) + 7, "Q90"), Mention(14, 19, "Q90"), Mention(14, 17, "Q142")]

    linking = EntityLinking(rows(), linker=sloppy_linker)
    linking.start("train")
    records = [RelationExample("Obama visited Paris in Hawaii .", (0, 5), (23, 29), "P1", "a", "Q404", "Q782"),
               RelationExample("Obama visited Paris in Hawaii .", (0, 5), (23, 29), "P1", "b", "Q76", "Q782")]
    feats = [encode_relation(r, tiny_backbone.tokenizer, 64, linking=linking) for r in records]
    assert [sum(e >= 0 for e in f["token_entities"]) > 0 for f in feats] == [True, True]
    linking.start("test")  # logs the train line
    with caplog.at_level(logging.INFO):
        report = linking.report()
        linking.report()
    assert report["train"]["dropped_outside_text"] == 2 and report["train"]["dropped_overlapping"] == 2
    lines = [r.getMessage() for r in caplog.records if "entity linking" in r.getMessage()]
    assert lines == ["entity linking train: 2 instances, 100.0% with >=1 and 50.0% with every target linked; "
                     "5/10 mentions linked; dropped: outside_text 2, overlapping 2, unknown_id 1 (e.g. Q404)"]


def test_kg_entity_with_empty_description_is_counted_and_still_linked():
    g = graph()
    assert g.stats["entities_without_description"] == 1
    assert g.entity_descriptions[g.entity_index("Q142")] == "France"  # its name stands in
    assert DictionaryLinker.from_graph(g)("France") == [Mention(0, 6, "Q142")]


def test_link_kg_folder_with_an_empty_description_logs_one_line(tmp_path, caplog, tiny_backbone):
    """An entity without a description (listed, no entity2text line) is counted in one INFO line, falls
    back to its name (here its id), and its memory row is LM1 over that text."""
    from kadapt.core.family import build_plugin
    from kadapt.kg import read_kg
    from kadapt.plugins.jaket.memory import encode_descriptions
    from kadapt.plugins.jaket.pretraining import build_memory

    (tmp_path / "entities.txt").write_text("Q90\nQ142\n")
    (tmp_path / "entity2text.txt").write_text("Q90\tParis, capital of France\n")
    (tmp_path / "relation2text.txt").write_text("P17\tcountry\n")
    (tmp_path / "train.tsv").write_text("Q90\tP17\tQ142\n")
    with caplog.at_level(logging.INFO):
        g = read_kg(tmp_path)
    assert [r.getMessage() for r in caplog.records if "entities_without" in r.getMessage()] == [
        f"{tmp_path}: entities_without_description = 1"]
    assert (g.entity_names[1], g.entity_descriptions[1]) == ("Q142", "Q142")
    plugin = build_plugin("jaket", {"fanouts": [2, 2]}, tiny_backbone.spec)
    memory = build_memory(tiny_backbone, g, plugin)
    alone = encode_descriptions(tiny_backbone, [("Q142", "Q142")], plugin.lm1_layer,
                                max_length=plugin.config.description_max_length)
    assert torch.allclose(memory.entities[1], alone[0], atol=1e-6)
