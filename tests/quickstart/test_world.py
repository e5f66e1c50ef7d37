"""Tests for the quickstart knowledge-world generator (kadapt.quickstart.world)."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from kadapt.quickstart import grammar
from kadapt.quickstart.world import (FACT_LABELS, INFUSE_DEV_TEMPLATES, INFUSE_TEMPLATES,
                                     SYNTAX_LABELS, TASK_TEMPLATES, WorldConfig, generate_world,
                                     syntax_example)

SMALL = dict(n_people=20, n_cities=8, n_countries=3, n_companies=6, syntax_train_sentences=150,
             syntax_dev_sentences=30, syntax_task_sizes=(30, 30, 60))
RELATION_KEYS = {"token", "subj_start", "subj_end", "obj_start", "obj_end", "relation"}
UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"}
# Words that must never be an entity name (the test's own list, independent of the generator's).
ENGLISH = set("""the a an and or but of to in on at by for with from as is was are were be been
it he she they we you i me him her them his their our my your this that these those what which
who whom when where why how all any some no not yes one two three man woman child time year day
way thing world life hand part place case week work home city country company person people
name king queen river house water money music paris london rome berlin tokyo madrid lima oslo
milan peru cuba mali chad oman kenya india china japan spain italy texas anna maria sara nora
lemon melon salad sofa panel motor robin banana potato tomato zebra camel data""".split())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The default-sized world, generated once for the module."""
    return generate_world(tmp_path_factory.mktemp("world"), WorldConfig())


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _pairs(records: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["token"][r["subj_start"]], r["token"][r["obj_start"]], r["relation"])
            for r in records}


def _conllu_blocks(path: Path) -> list[tuple[dict[str, str], list[list[str]]]]:
    """Parse CoNLL-U strictly by hand: (comments, rows) per sentence, asserting the shape."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n\n") and "\r" not in text
    blocks = []
    for block in text.rstrip("\n").split("\n\n"):
        comments, rows = {}, []
        for line in block.split("\n"):
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                comments[key.strip()] = value.strip()
            else:
                cols = line.split("\t")
                assert len(cols) == 10, line
                rows.append(cols)
        blocks.append((comments, rows))
    return blocks


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_world(tmp_path / "a", WorldConfig(seed=7, **SMALL))
    b = generate_world(tmp_path / "b", WorldConfig(seed=7, **SMALL))
    c = generate_world(tmp_path / "c", WorldConfig(seed=8, **SMALL))
    assert sorted(a.paths) == sorted(b.paths)
    for name, path in a.paths.items():
        assert path.read_bytes() == b.paths[name].read_bytes(), name
        if name != "manifest":
            assert path.read_bytes() != c.paths[name].read_bytes(), name
    assert not list((tmp_path / "a").glob(".*tmp")), "temporary files left behind"


def test_default_counts_and_labels(world) -> None:
    c = world.counts
    assert (c["entities"], c["facts"]) == (113, 305)
    assert (c["infuse_factual_train"], c["infuse_factual_dev"]) == (4 * 305, 305)
    assert c["task_facts_train"] + c["task_facts_dev"] + c["task_facts_test"] == 305
    assert (c["infuse_syntax_train"], c["infuse_syntax_dev"]) == (3000, 300)
    assert (c["task_syntax_train"], c["task_syntax_dev"], c["task_syntax_test"]) == (240, 240, 480)
    manifest = json.loads(world["manifest"].read_text())
    assert manifest["counts"] == c
    assert tuple(manifest["fact_labels"]) == FACT_LABELS == world.fact_labels
    assert tuple(manifest["syntax_labels"]) == SYNTAX_LABELS == world.syntax_labels
    assert set(SYNTAX_LABELS) == {"head_of", "dependent_of", "unrelated"}
    for name in ("infuse_factual_train", "task_facts_train", "task_facts_test"):
        assert {r["relation"] for r in _load(world[name])} == set(FACT_LABELS), name
    for part in ("train", "dev", "test"):
        labels = Counter(r["relation"] for r in _load(world[f"task_syntax_{part}"]))
        assert set(labels) == set(SYNTAX_LABELS) and max(labels.values()) - min(labels.values()) <= 1


def test_relation_files_shape(world) -> None:
    for name, path in world.paths.items():
        if not path.name.endswith(".json") or name in ("world_kb", "manifest"):
            continue
        labels = FACT_LABELS if "fact" in name else SYNTAX_LABELS
        records = _load(path)
        assert isinstance(records, list) and len(records) == world.counts[name]
        for r in records:
            assert set(r) == RELATION_KEYS
            n = len(r["token"])
            assert all(isinstance(t, str) and t and " " not in t for t in r["token"])
            assert 0 <= r["subj_start"] <= r["subj_end"] < n
            assert 0 <= r["obj_start"] <= r["obj_end"] < n
            assert r["subj_end"] < r["obj_start"] or r["obj_end"] < r["subj_start"]
            assert r["relation"] in labels


def test_fact_split_by_fact_and_all_infused(world) -> None:
    train = _pairs(_load(world["task_facts_train"]))
    held_out = _pairs(_load(world["task_facts_dev"])) | _pairs(_load(world["task_facts_test"]))
    infused = _pairs(_load(world["infuse_factual_train"]))
    assert not {(s, o) for s, o, _ in train} & {(s, o) for s, o, _ in held_out}
    assert held_out | train <= infused
    assert held_out | train <= _pairs(_load(world["infuse_factual_dev"]))
    kb = json.loads(world["world_kb"].read_text())
    assert {(f["subj"], f["obj"], f["relation"]) for f in kb["facts"]} == infused
    assert len({(f["subj"], f["obj"]) for f in kb["facts"]}) == len(kb["facts"]), "one label per pair"
    assert Counter(f["task_split"] for f in kb["facts"])["train"] == len(train)


def test_templates_neutral_and_disjoint(world) -> None:
    families = [set(INFUSE_TEMPLATES), set(INFUSE_DEV_TEMPLATES), set(TASK_TEMPLATES)]
    assert sum(map(len, families)) == len(set().union(*families))
    cue_words = {"born", "lives", "live", "works", "work", "founded", "founder", "citizen",
                 "mentor", "headquarters", "located", "city", "country", "company", "person"}
    for template in set().union(*families):
        assert not cue_words & set(template.lower().split()), template
        assert template.split().count("S") == 1 and template.split().count("O") == 1

    def contexts(name: str) -> set[str]:
        out = set()
        for r in _load(world[name]):
            words = list(r["token"])
            words[r["subj_start"]], words[r["obj_start"]] = "S", "O"
            out.add(" ".join(words))
        return out
    assert contexts("infuse_factual_train") <= set(INFUSE_TEMPLATES)
    assert contexts("infuse_factual_dev") <= set(INFUSE_DEV_TEMPLATES)
    assert contexts("task_facts_test") <= set(TASK_TEMPLATES)


def test_names_are_invented(world) -> None:
    kb = json.loads(world["world_kb"].read_text())
    names = [n for group in kb["entities"].values() for n in group]
    assert set(kb["entities"]) == {"person", "city", "country", "company"}
    assert len({n.lower() for n in names}) == len(names) == 113
    for name in names:
        assert name.isalpha() and name[0].isupper() and len(name) >= 5, name
        assert name.lower() not in ENGLISH and name.lower() not in grammar.VOCABULARY, name


def test_conllu_trees_valid(world) -> None:
    for part in ("train", "dev"):
        blocks = _conllu_blocks(world[f"infuse_syntax_{part}"])
        assert len(blocks) == world.counts[f"infuse_syntax_{part}"]
        assert len({c["sent_id"] for c, _ in blocks}) == len(blocks)
        for comments, rows in blocks:
            assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
            assert comments["text"] == " ".join(r[1] for r in rows)
            heads = [int(r[6]) for r in rows]
            assert grammar.check_tree(heads) is None, comments["sent_id"]
            for r in rows:
                assert r[3] in UPOS and r[7] and r[7] != "_" and r[2]
                assert (r[7] == "root") == (r[6] == "0")


def test_check_tree_rejects_bad_trees() -> None:
    assert grammar.check_tree([2, 0, 2]) is None
    assert grammar.check_tree([0, 0]) is not None  # two roots
    assert grammar.check_tree([2, 1, 0]) is not None  # cycle
    assert grammar.check_tree([4, 0, 2]) is not None  # head out of range


def test_grammar_is_unambiguous() -> None:
    """The same word string always comes with the same tree (head prediction is learnable)."""
    gen = grammar.SentenceGenerator(random.Random(0), ["Vorkel", "Tashimu"])
    seen: dict[str, tuple] = {}
    for _ in range(4000):
        tree = gen.sentence()
        analysis = tuple((t.head, t.deprel) for t in tree.tokens)
        assert seen.setdefault(tree.text, analysis) == analysis, tree.text


def test_syntax_example_labels() -> None:
    tree = grammar.Tree()
    for form, upos in (("The", "DET"), ("dog", "NOUN"), ("saw", "VERB"), ("Vorkel", "PROPN"),
                       ("near", "ADP"), ("the", "DET"), ("river", "NOUN"), (".", "PUNCT")):
        tree.add(form, upos)
    for dep, head, rel in ((1, 2, "det"), (2, 3, "nsubj"), (3, 0, "root"), (4, 3, "obj"),
                           (5, 7, "case"), (6, 7, "det"), (7, 3, "obl"), (8, 3, "punct")):
        tree.attach(dep, head, rel)
    rng = random.Random(0)
    arcs = {(2, 1), (2, 3), (2, 6)}  # (head, dependent), 0-based
    for _ in range(50):
        for label in SYNTAX_LABELS:
            r = syntax_example(tree, label, rng)
            pair = (r["subj_start"], r["obj_start"])
            assert r["relation"] == label
            if label == "head_of":
                assert pair in arcs
            elif label == "dependent_of":
                assert pair[::-1] in arcs
            else:
                assert pair not in arcs and pair[::-1] not in arcs


def test_syntax_task_held_out_and_corpus_complete(world) -> None:
    infused = {c["text"] for part in ("train", "dev")
               for c, _ in _conllu_blocks(world[f"infuse_syntax_{part}"])}
    task_texts = {" ".join(r["token"]) for part in ("train", "dev", "test")
                  for r in _load(world[f"task_syntax_{part}"])}
    assert not task_texts & infused
    corpus = world["corpus"].read_text(encoding="utf-8").splitlines()
    assert len(corpus) == len(set(corpus)) == world.counts["corpus"]
    assert infused <= set(corpus)
    assert {"@", "#"} <= set(" ".join(corpus).split()), "markers must reach the tokenizer"


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        WorldConfig(task_train_fraction=0.6, task_dev_fraction=0.5)
    with pytest.raises(ValueError):
        WorldConfig(n_cities=1)
    with pytest.raises(ValueError):
        WorldConfig(infuse_sentences_per_fact=len(INFUSE_TEMPLATES) + 1)


def test_files_parse_with_conllu_library(world) -> None:
    conllu = pytest.importorskip("conllu")
    sentences = conllu.parse(world["infuse_syntax_dev"].read_text(encoding="utf-8"))
    assert len(sentences) == world.counts["infuse_syntax_dev"]
    assert all(sum(t["head"] == 0 for t in s) == 1 for s in sentences)


def test_files_parse_with_kadapt_readers(world) -> None:
    relation_readers = pytest.importorskip("kadapt.data.relations")
    conllu_reader = pytest.importorskip("kadapt.data.conllu")
    for name, path in world.paths.items():
        if name.startswith(("infuse_factual", "task_")):
            examples = list(relation_readers.read_trex_rc(path))
            records = _load(path)
            assert len(examples) == len(records), name
            for ex, r in zip(examples, records):
                assert ex.text[slice(*ex.subj_span)] == " ".join(
                    r["token"][r["subj_start"]:r["subj_end"] + 1])
                assert ex.label == r["relation"]
        elif name.startswith("infuse_syntax"):
            examples = list(conllu_reader.read_conllu(path))
            assert len(examples) == world.counts[name], name
            assert all(grammar.check_tree(list(ex.heads)) is None for ex in examples)
