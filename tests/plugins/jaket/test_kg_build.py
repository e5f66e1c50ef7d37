"""`kadapt kg build`: Wikidata-linked KG from LAMA T-REx + CoDEx-S + mParaRel (tiny synthetic copies)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from kadapt.cli.app import main
from kadapt.kg import read_kg
from kadapt.plugins.jaket.kg_build import _held_out
from kadapt.plugins.jaket.linker import DictionaryLinker
from kadapt.plugins.jaket.text_linking import ALIAS_FILE, read_aliases

FACTS = [("Q1", "Allan Peiper", "P19", "Q2", "Alexandra, Victoria"), ("Q3", "Marie Curie", "P19", "Q4", "Warsaw"),
         ("Q5", "Berlin", "P17", "Q6", "Germany"), ("Q7", "Paris", "P17", "Q8", "France")]


def _gz(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))


def _data(root: Path) -> tuple[Path, Path, Path]:
    lama, codex, mpararel = root / "lama", root / "codex", root / "mpararel"
    for rel in ("P19", "P17"):
        _gz(lama / "TREx" / f"{rel}.jsonl.gz", [{"sub_uri": s, "sub_label": sl, "predicate_id": p, "obj_uri": o,
                                                 "obj_label": ol, "evidences": []} for s, sl, p, o, ol in FACTS if p == rel])
    (lama / "relations.jsonl").write_text("".join(json.dumps({"relation": r, "label": n}) + "\n"
                                                  for r, n in (("P19", "place of birth"), ("P17", "country"))))
    (codex / "triples").mkdir(parents=True)
    for name in ("train", "valid", "test"):
        (codex / "triples" / f"{name}.txt").write_text("Q9\tP27\tQ6\n" if name == "train" else "Q8\tP36\tQ7\n" if name == "test" else "")
    (codex / "relations").mkdir()
    (codex / "relations" / "relations.en.json").write_text(json.dumps({"P27": {"label": "citizenship"}}))
    (codex / "types").mkdir()
    (codex / "types" / "entity2types.json").write_text(json.dumps({"Q5": ["T1"], "Q3": ["T2", "T1"]}))
    (codex / "types" / "types.en.json").write_text(json.dumps({"T1": {"label": "city"}, "T2": {"label": "human"}}))
    _gz(mpararel / "tuples" / "de" / "P17.jsonl.gz", [{"sub_uri": "Q6", "sub_label": "Deutschland", "obj_uri": "Q5", "obj_label": "Berlin"}])
    return lama, codex, mpararel


def test_kg_build_writes_a_linked_kg_without_heldout_facts(tmp_path, capsys):
    lama, codex, mpararel = _data(tmp_path)
    seed = next(s for s in range(100) if [_held_out((s_, p, o), 0.3, s) for s_, _, p, o, _ in FACTS] == [False, False, False, True])
    out = tmp_path / "kg"
    assert main(["kg", "build", "--lama", str(lama), "--codex", str(codex), "--mpararel", str(mpararel),
                 "--holdout", "0.3", "--seed", str(seed), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["heldout_facts"] == 1 and summary["removed_for_heldout_pairs"] == 1  # Q8 P36 Q7: same pair
    assert (out / "heldout_facts.tsv").read_text() == "Q7\tP17\tQ8\n"
    g = read_kg(out)
    triples = {(g.entity_ids[h], g.relation_ids[r], g.entity_ids[t]) for h, r, t in g.triples.tolist()}
    assert triples == {("Q1", "P19", "Q2"), ("Q3", "P19", "Q4"), ("Q5", "P17", "Q6"), ("Q9", "P27", "Q6")}
    assert g.num_entities == 9 and g.relation_names[g.relation_ids.index("P27")] == "citizenship"
    assert g.entity_descriptions[g.entity_index("Q3")] == "Marie Curie, human, city"
    assert g.entity_categories[g.entity_index("Q5")] == "city"
    assert g.entity_names[g.entity_index("Q2")] == "Alexandra"  # KG-BERT name: text before ", " ...
    aliases = read_aliases(out / ALIAS_FILE)
    assert aliases["Q2"] == ["Alexandra, Victoria"] and aliases["Q6"] == ["Germany", "Deutschland"]
    assert g.entity_descriptions[g.entity_index("Q9")] == "Q9"  # no label anywhere: counted in the summary
    assert summary["without_label"] == 1
    linker = DictionaryLinker.from_graph(g, aliases)  # ... the full label is an alias
    text = "Peiper was born in Alexandra, Victoria; Deutschland"
    assert [(text[m.start:m.end], m.entity_id) for m in linker(text)] == [("Alexandra, Victoria", "Q2"), ("Deutschland", "Q6")]
