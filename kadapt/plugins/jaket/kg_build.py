"""``kadapt kg build``: a Wikidata-linked KG for JAKET on text, from the shared LAMA T-REx, CoDEx-S and
mParaRel data, written in the KG-BERT folder layout that :func:`kadapt.kg.read_kg` reads.

* Entities and triples: every LAMA T-REx fact (``sub_uri`` -P-> ``obj_uri``, English labels) and every
  CoDEx-S triple (train / valid / test); relation names from LAMA's ``relations.jsonl`` and CoDEx's
  ``relations.en.json``.
* Categories (``entity2category.tsv``): the first Wikidata type (P31) of CoDEx's ``entity2types.json``
  with its English label, where the entity has one.
* Aliases (``entity2aliases.tsv``, read by JAKET's linker): the entity's labels in every mParaRel
  language (en, de, fr, ru, el, ar, zh-hans, ja), the LAMA label first.
* Description (``entity2text.txt``): ``"label, <type labels>"`` -- the label plus its Wikidata types, or
  the label alone. No Wikipedia abstracts are in the shared data; an evidence sentence was rejected
  because the T-REx evidence sentences ARE the downstream relation-classification inputs (a description
  built from them would hand the model its own test sentences). Leakage that remains: the types are
  Wikidata P31 facts, so the "instance of" relation (P31, one LAMA relation) is visible through
  descriptions -- exclude P31 when evaluating on held-out facts; and a label in a description can itself
  mention a related entity ("Alexandra, Victoria").
* Held-out facts: a seeded ``holdout`` share of the LAMA facts (by hash of subject, relation, object) is
  written to ``heldout_facts.tsv`` and left out of the KG, together with every other triple (CoDEx's too)
  between the same two entities in either direction, so relation classification on the T-REx sentences
  of those facts reads a KG that does not contain them. The KG-BERT reader takes the name from the text
  before the first ``", "``; labels that contain one are complete in the alias file.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from kadapt.core.errors import DataError, KadaptError

LANGUAGES = ("en", "de", "fr", "ru", "el", "ar", "zh-hans", "ja")


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(path, number, f"malformed JSON: {err.msg}") from None


def _held_out(fact: tuple[str, str, str], share: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{'|'.join(fact)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < share


class _Builder:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.aliases: dict[str, list[str]] = {}
        self.relations: dict[str, str] = {}
        self.triples: set[tuple[str, str, str]] = set()
        self.heldout: set[tuple[str, str, str]] = set()
        self.stats = {"lama_facts": 0, "codex_triples": 0, "facts_without_ids": 0}

    def alias(self, qid: str, label: str) -> None:
        label = (label or "").strip()
        if label and label not in self.aliases.setdefault(qid, []):
            self.aliases[qid].append(label)

    def lama(self, trex: Path, relations_file: Path, holdout: float, seed: int) -> None:
        for _, rel in _jsonl(relations_file):
            self.relations[rel["relation"]] = rel.get("label") or rel["relation"]
        for path in sorted(trex.glob("P*.jsonl*")):
            for number, fact in _jsonl(path):
                sub, obj, pred = fact.get("sub_uri"), fact.get("obj_uri"), fact.get("predicate_id")
                if not (isinstance(sub, str) and isinstance(obj, str) and isinstance(pred, str)):
                    self.stats["facts_without_ids"] += 1
                    continue
                self.stats["lama_facts"] += 1
                for qid, key in ((sub, "sub_label"), (obj, "obj_label")):
                    self.labels.setdefault(qid, (fact.get(key) or qid).strip())
                    self.alias(qid, fact.get(key, ""))
                self.relations.setdefault(pred, pred)
                triple = (sub, pred, obj)
                (self.heldout if _held_out(triple, holdout, seed) else self.triples).add(triple)

    def codex(self, root: Path) -> None:
        rel_names = json.loads((root / "relations" / "relations.en.json").read_text(encoding="utf-8"))
        for name in ("train", "valid", "test"):
            path = root / "triples" / f"{name}.txt"
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                fields = line.split("\t")
                if len(fields) != 3:
                    raise DataError(path, number, f"expected head<TAB>relation<TAB>tail, got {len(fields)} field(s)")
                h, r, t = (f.strip() for f in fields)
                self.relations.setdefault(r, rel_names.get(r, {}).get("label") or r)
                self.triples.add((h, r, t))
                self.stats["codex_triples"] += 1

    def mpararel(self, tuples: Path) -> None:
        for lang in LANGUAGES:
            for path in sorted((tuples / lang).glob("P*.jsonl*")) if (tuples / lang).is_dir() else []:
                for _, fact in _jsonl(path):
                    for qid, key in (("sub_uri", "sub_label"), ("obj_uri", "obj_label")):
                        if isinstance(fact.get(qid), str):
                            self.alias(fact[qid], fact.get(key, ""))
                            if lang == "en":
                                self.labels.setdefault(fact[qid], fact.get(key) or fact[qid])


def build_wikidata_kg(out: str | Path, *, lama: str | Path, codex: str | Path | None = None,
                      mpararel: str | Path | None = None, holdout: float = 0.2, seed: int = 0) -> dict:
    """Write the KG folder (see the module doc); returns its summary (also in ``build.json``)."""
    if not 0.0 <= holdout < 1.0:
        raise KadaptError(f"holdout must be in [0, 1), got {holdout}")
    lama, out = Path(lama), Path(out)
    b = _Builder()
    b.lama(lama / "TREx", lama / "relations.jsonl", holdout, seed)
    if codex:
        b.codex(Path(codex))
    if mpararel:
        b.mpararel(Path(mpararel) / "tuples")
    pairs = {(h, t) for h, _, t in b.heldout} | {(t, h) for h, _, t in b.heldout}
    kept = sorted(x for x in b.triples if (x[0], x[2]) not in pairs)
    entities = sorted({e for h, _, t in kept for e in (h, t)} | {e for h, _, t in b.heldout for e in (h, t)})
    categories, types = _categories(Path(codex) if codex else None, entities)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "train.tsv", ("\t".join(x) for x in kept))
    _write(out / "heldout_facts.tsv", ("\t".join(x) for x in sorted(b.heldout)))
    _write(out / "entity2text.txt", _entity_lines(entities, b.labels, types))
    _write(out / "relation2text.txt", (f"{r}\t{n}" for r, n in sorted(b.relations.items())))
    _write(out / "entity2category.tsv", (f"{e}\t{c}" for e, c in sorted(categories.items())))
    _write(out / "entity2aliases.tsv", ("\t".join([e, *b.aliases[e]]) for e in entities if b.aliases.get(e)))
    summary = {**b.stats, "entities": len(entities), "relations": len(b.relations), "triples": len(kept),
               "heldout_facts": len(b.heldout), "removed_for_heldout_pairs": len(b.triples) - len(kept),
               "with_category": len(categories), "with_aliases": sum(bool(b.aliases.get(e)) for e in entities),
               "without_label": sum(e not in b.labels for e in entities),
               "holdout": holdout, "seed": seed, "description": "label, Wikidata type labels (or label alone)"}
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _categories(codex: Path | None, entities: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """First type label (category) and all type labels per entity, from CoDEx's type files."""
    if codex is None:
        return {}, {}
    ent_types = json.loads((codex / "types" / "entity2types.json").read_text(encoding="utf-8"))
    names = {k: v.get("label") for k, v in json.loads((codex / "types" / "types.en.json").read_text(encoding="utf-8")).items()}
    types = {e: [names[t] for t in ent_types.get(e, []) if names.get(t)] for e in entities}
    return {e: ts[0] for e, ts in types.items() if ts}, types


def _entity_lines(entities: list[str], labels: dict[str, str], types: dict[str, list[str]]) -> Iterator[str]:
    for e in entities:
        label = " ".join(labels.get(e, e).split())
        kinds = ", ".join(types.get(e, [])[:3])
        yield f"{e}\t{label}, {kinds}" if kinds else f"{e}\t{label}"


def _write(path: Path, lines) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
