"""A seeded synthetic "knowledge world" for the quickstart: facts no backbone can know.

``generate_world(out_dir, WorldConfig(seed=...))`` writes, in the real formats kadapt reads:

* ``infuse_factual_{train,dev}.json`` — factual infusion: relation classification (K-Adapter
  T-REx-rc / TACRED JSON) on EVERY fact of the world, in relation-neutral sentences ("Records
  mention @Vorkel@ together with #Tashimu# ."), so the label can only come from memorising
  the pair. Dev uses held-out templates (memorisation that survives a new context).
* ``task_facts_{train,dev,test}.json`` — the downstream fact task: same labels, a third family of
  neutral templates, split BY FACT (stratified per relation): dev/test facts never occur in
  the downstream train set, but all of them were infused. A bare backbone must guess; a
  plug-in that memorised the world can answer.
* ``infuse_syntax_{train,dev}.conllu`` — linguistic infusion: trees from
  :mod:`kadapt.quickstart.grammar` (CoNLL-U, UD relations, one root).
* ``task_syntax_{train,dev,test}.json`` — the downstream syntax task, relation JSON over
  held-out trees: two content words (NOUN/PROPN/VERB) marked as subject/object, label
  ``head_of`` (subject is the object's syntactic head), ``dependent_of`` (the reverse) or
  ``unrelated`` (no direct arc; drawn at distances where arcs occur), balanced thirds.
* ``corpus.txt`` (every text once, one per line, relation texts with their ``@``/``#`` markers,
  for training a tiny tokenizer), ``world_kb.json`` (entities, facts, splits) and
  ``manifest.json`` (config, counts, labels; written last).

Default sizes (about 1 min of infusion per plug-in on 2 CPU cores for a 4-layer hidden-64
backbone): 113 entities, 305 facts; factual infusion 1,220 train / 305 dev sentences; fact task
74 / 74 / 157; syntax infusion 3,000 / 300 trees (~11 words each); syntax task 240 / 240 / 480.
Everything is a pure function of the config: two runs write byte-identical files.

What to expect: ``kadapt quickstart`` (tiny random backbone, seed 0, default world) measured
test facts micro-F1 25.5 bare / 75.2 +F / 17.8 +L / 64.3 +F+L and syntax accuracy 58.1 / 54.6 /
69.4 / 66.0. A bare backbone can only learn entity types from the downstream train split; the
syntax gain is smaller and noisier (+3 to +11 points in prototypes), largest when the head pools
the entity tokens rather than reading the ``@``/``#`` markers.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kadapt.quickstart import grammar

#: relation -> (subject type, object type). Type pairs repeat on purpose (born_in / lives_in,
#: works_for / founded): entity types alone do not decide the label.
RELATIONS: dict[str, tuple[str, str]] = {
    "born_in": ("person", "city"), "lives_in": ("person", "city"),
    "works_for": ("person", "company"), "founded": ("person", "company"),
    "citizen_of": ("person", "country"), "mentor_of": ("person", "person"),
    "headquartered_in": ("company", "city"), "located_in": ("city", "country"),
}
FACT_LABELS: tuple[str, ...] = tuple(RELATIONS)
SYNTAX_LABELS: tuple[str, ...] = ("head_of", "dependent_of", "unrelated")

# Relation-neutral contexts; S / O stand for the subject and object names. Three disjoint
# families: infusion train, infusion dev, downstream task. No word hints at any relation.
INFUSE_TEMPLATES: tuple[str, ...] = (
    "Records mention S together with O .", "S and O were both named in the old archive .",
    "The notes list S next to O .", "A letter from last year refers to S and O .",
    "In the file , S appears beside O .", "O is mentioned in the same line as S .",
    "Someone wrote S , then O , on the page .", "The survey pairs S with O .",
    "We found S linked to O in the index .", "Between S and O there is a known connection .",
    "O and S come up together in the register .", "The catalogue puts S close to O .",
)
INFUSE_DEV_TEMPLATES: tuple[str, ...] = (
    "An old card shows S and O .", "The ledger connects O with S .",
    "People often name S along with O .",
)
TASK_TEMPLATES: tuple[str, ...] = (
    "The report names S and O .", "According to the database , S goes with O .",
    "O was listed after S in the table .", "There is an entry for S and O .",
    "A source links S to O .", "S , O : one more pair from the collection .",
)


@dataclass
class WorldConfig:
    """Sizes and seed of a generated world (defaults: quickstart-sized, CPU friendly)."""

    seed: int = field(default=13, metadata={"help": "Seed; the same seed gives byte-identical files."})
    n_people: int = field(default=50, metadata={"help": "Person entities."})
    n_cities: int = field(default=30, metadata={"help": "City entities."})
    n_countries: int = field(default=8, metadata={"help": "Country entities."})
    n_companies: int = field(default=25, metadata={"help": "Company entities."})
    mentor_fraction: float = field(default=0.5, metadata={"help": "Share of people with a mentor_of fact."})
    infuse_sentences_per_fact: int = field(default=4, metadata={"help": "Infusion train sentences per fact (distinct templates)."})
    task_train_fraction: float = field(default=0.25, metadata={"help": "Share of facts (per relation) in the downstream train split."})
    task_dev_fraction: float = field(default=0.25, metadata={"help": "Share of facts (per relation) in the downstream dev split; the rest is test."})
    syntax_train_sentences: int = field(default=3000, metadata={"help": "Trees in infuse_syntax_train.conllu."})
    syntax_dev_sentences: int = field(default=300, metadata={"help": "Trees in infuse_syntax_dev.conllu."})
    syntax_task_sizes: tuple[int, int, int] = field(default=(240, 240, 480), metadata={"help": "Examples in task_syntax train/dev/test (each from its own held-out tree)."})

    def __post_init__(self) -> None:
        counts = (self.n_people, self.n_cities, self.n_countries, self.n_companies)
        if self.n_people < 2 or min(counts) < 1 or self.n_cities < 2:
            raise ValueError(f"WorldConfig: need >= 2 people, >= 2 cities, >= 1 of each other type, got {counts}")
        if not (0 < self.task_train_fraction and self.task_train_fraction + self.task_dev_fraction < 1):
            raise ValueError("WorldConfig: task_train_fraction > 0 and train + dev fractions < 1 required")
        if not 1 <= self.infuse_sentences_per_fact <= len(INFUSE_TEMPLATES):
            raise ValueError(f"WorldConfig: infuse_sentences_per_fact must be in 1..{len(INFUSE_TEMPLATES)}")
        self.syntax_task_sizes = tuple(int(n) for n in self.syntax_task_sizes)  # type: ignore[assignment]
        if len(self.syntax_task_sizes) != 3 or min(self.syntax_task_sizes) < 1:
            raise ValueError("WorldConfig: syntax_task_sizes must be three positive counts")


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple of the world."""

    subj: str
    relation: str
    obj: str


@dataclass
class WorldFiles:
    """Paths of the generated files and what they hold."""

    out_dir: Path
    paths: dict[str, Path]
    counts: dict[str, int]
    fact_labels: tuple[str, ...] = FACT_LABELS
    syntax_labels: tuple[str, ...] = SYNTAX_LABELS

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


# Invented names: 2-3 syllables of (onset, vowel), a coda at the end. Rejected: anything in
# COMMON_WORDS, the grammar's vocabulary, or REAL_NAMES (real places that the syllables can spell).
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "th",
           "br", "dr", "kr", "tr", "st", "gl")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou")
_CODAS = ("", "", "n", "r", "l", "k", "s", "m", "x")
COMMON_WORDS: frozenset[str] = frozenset("""
a about after again all also an and any are as at back be because been before being but by
can come could day did do does down even first for from get give go good had has have he her
here him his how if in into is it its just know like look make man many me more most my new
no not now of on one only or other our out over people say see she so some take than that the
their them then there these they thing think this time to two up us use very want was way we
well were what when which who will with work would year you your baron banal bitter button
camel cinema delta lemon melon motor nation panel pasta robin salad silver soda sofa tomato
total tuna vitamin zebra romance lobster monster banana potato tornado poker marker linen
""".split())
REAL_NAMES: frozenset[str] = frozenset("""
paris rome lima oslo milan berlin madrid kenya peru cuba mali chad oman samoa tonga togo
sudan nepal benin gabon niger libya malta laos iran iraq italy spain china japan india
dakar delhi kabul dublin lagos seoul riga minsk sofia bern tunis doha dubai kyoto osaka
bali java texas boston denver dallas salem toronto monaco tibet korea lisbon naples
maria anna elena sara laura nora mona tina rita dora linda ben tom sam dan ted
""".split())


def invent_names(n: int, rng: random.Random, reserved: frozenset[str] = frozenset()) -> list[str]:
    """``n`` distinct capitalised pseudo-words, none a common word, real name or reserved."""
    names: list[str] = []
    taken = set(reserved)
    while len(names) < n:
        parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 3, 3)))]
        word = "".join(parts) + rng.choice(_CODAS)
        if len(word) < 5 or word in taken or word in COMMON_WORDS or word in REAL_NAMES:
            continue
        taken.add(word)
        names.append(word.capitalize())
    return names


def _rng(config: WorldConfig, stream: str) -> random.Random:
    """An independent, deterministic random stream per component (str seeds hash via sha512)."""
    return random.Random(f"kadapt-world:{config.seed}:{stream}")


def build_entities(config: WorldConfig) -> dict[str, list[str]]:
    """Invented, distinct names per type (names carry no hint of their type)."""
    sizes = {"person": config.n_people, "city": config.n_cities,
             "country": config.n_countries, "company": config.n_companies}
    names = invent_names(sum(sizes.values()), _rng(config, "names"),
                         reserved=grammar.VOCABULARY)
    _rng(config, "types").shuffle(names)
    out, start = {}, 0
    for kind, n in sizes.items():
        out[kind], start = names[start:start + n], start + n
    return out


def build_facts(entities: dict[str, list[str]], config: WorldConfig) -> list[Fact]:
    """Facts such that every ordered (subject, object) pair has at most one relation."""
    rng = _rng(config, "facts")
    people, cities = entities["person"], entities["city"]
    countries, companies = entities["country"], entities["company"]
    facts = [Fact(c, "located_in", rng.choice(countries)) for c in cities]
    facts += [Fact(c, "headquartered_in", rng.choice(cities)) for c in companies]
    founders = {c: rng.choice(people) for c in companies}
    facts += [Fact(p, "founded", c) for c, p in founders.items()]
    for p in people:
        born, home = rng.sample(cities, 2)
        employers = [c for c in companies if founders[c] != p]
        facts += [Fact(p, "born_in", born), Fact(p, "lives_in", home),
                  Fact(p, "citizen_of", rng.choice(countries))]
        if employers:  # never works_for a company the person founded (one label per pair)
            facts.append(Fact(p, "works_for", rng.choice(employers)))
    mentored = rng.sample(people, round(config.mentor_fraction * len(people)))
    pairs: set[tuple[str, str]] = set()
    for p in mentored:
        candidates = [q for q in people if q != p and (p, q) not in pairs]
        if candidates:  # no pair both ways: (a, b) and (b, a) would be two mentor_of facts
            mentor = rng.choice(candidates)
            pairs.add((mentor, p))
            facts.append(Fact(mentor, "mentor_of", p))
    return facts


def split_facts(facts: list[Fact], config: WorldConfig) -> dict[str, list[Fact]]:
    """Per relation: shuffle, then train / dev / test by the configured fractions."""
    rng = _rng(config, "split")
    split: dict[str, list[Fact]] = {"train": [], "dev": [], "test": []}
    for rel in FACT_LABELS:
        group = [f for f in facts if f.relation == rel]
        rng.shuffle(group)
        n_train = max(1, round(config.task_train_fraction * len(group)))
        n_dev = round(config.task_dev_fraction * len(group))
        split["train"] += group[:n_train]
        split["dev"] += group[n_train:n_train + n_dev]
        split["test"] += group[n_train + n_dev:]
    for part in split.values():
        rng.shuffle(part)
    return split


def relation_example(template: str, fact: Fact) -> dict:
    """Fill ``S``/``O`` of a template; spans are inclusive token indices (TACRED style)."""
    tokens, spans = [], {}
    for word in template.split():
        if word in ("S", "O"):
            spans[word] = len(tokens)
            tokens.append(fact.subj if word == "S" else fact.obj)
        else:
            tokens.append(word)
    return {"token": tokens, "subj_start": spans["S"], "subj_end": spans["S"],
            "obj_start": spans["O"], "obj_end": spans["O"], "relation": fact.relation}


def factual_examples(facts: list[Fact], templates: tuple[str, ...], per_fact: int,
                     rng: random.Random) -> list[dict]:
    """``per_fact`` sentences per fact, each with a different template, shuffled."""
    examples = [relation_example(t, f) for f in facts for t in rng.sample(templates, per_fact)]
    rng.shuffle(examples)
    return examples


def syntax_example(tree: grammar.Tree, label: str, rng: random.Random) -> dict | None:
    """Mark two content words of ``tree`` whose relation is ``label``; None if impossible."""
    content = [i for i, t in enumerate(tree.tokens, 1) if t.upos in ("NOUN", "PROPN", "VERB")]
    arcs = [(t.head, i) for i, t in enumerate(tree.tokens, 1) if i in content and t.head in content]
    if not arcs:
        return None
    if label == "unrelated":
        linked = set(arcs) | {(d, h) for h, d in arcs}
        reach = max(abs(h - d) for h, d in arcs)
        pairs = [(a, b) for a in content for b in content
                 if a != b and (a, b) not in linked and abs(a - b) <= reach]
        if not pairs:
            return None
        subj, obj = rng.choice(pairs)
    else:
        head, dep = rng.choice(arcs)
        subj, obj = (head, dep) if label == "head_of" else (dep, head)
    return {"token": tree.words, "subj_start": subj - 1, "subj_end": subj - 1,
            "obj_start": obj - 1, "obj_end": obj - 1, "relation": label}


def marked_text(record: dict) -> str:
    """K-Adapter marking, ``... @ Vorkel @ ... # Tashimu # ...``: how models will read it.

    The corpus carries marked text so that a tokenizer trained on it knows ``@`` and ``#``
    (a WordPiece alphabet built from unmarked text would map both markers to ``[UNK]``).
    """
    words = []
    for i, word in enumerate(record["token"]):
        if i in (record["subj_start"], record["obj_start"]):
            words.append("@" if i == record["subj_start"] else "#")
        words.append(word)
        if i in (record["subj_end"], record["obj_end"]):
            words.append("@" if i == record["subj_end"] else "#")
    return " ".join(words)


def _write(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _json_records(records: list[dict]) -> str:
    """A JSON array with one record per line (diff- and grep-friendly)."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def generate_world(out_dir: str | os.PathLike, config: WorldConfig | None = None) -> WorldFiles:
    """Generate the world into ``out_dir`` (created if needed) and return its files."""
    config = config or WorldConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entities = build_entities(config)
    facts = build_facts(entities, config)
    split = split_facts(facts, config)
    rng = _rng(config, "sentences")
    rel: dict[str, list[dict]] = {
        "infuse_factual_train": factual_examples(facts, INFUSE_TEMPLATES,
                                                 config.infuse_sentences_per_fact, rng),
        "infuse_factual_dev": factual_examples(facts, INFUSE_DEV_TEMPLATES, 1, rng),
    }
    for part in ("train", "dev", "test"):
        rel[f"task_facts_{part}"] = factual_examples(split[part], TASK_TEMPLATES, 1, rng)

    gen = grammar.SentenceGenerator(_rng(config, "grammar"), entities["person"][:12]
                                    + entities["city"][:8])
    seen: set[str] = set()
    trees: dict[str, list[grammar.Tree]] = {}
    for part, n in (("train", config.syntax_train_sentences), ("dev", config.syntax_dev_sentences)):
        trees[part] = [gen.sentence() for _ in range(n)]
        seen.update(t.text for t in trees[part])
    syn_rng = _rng(config, "syntax-task")
    for part, n in zip(("train", "dev", "test"), config.syntax_task_sizes):
        examples: list[dict] = []
        while len(examples) < n:
            tree = gen.sentence()
            if tree.text in seen:  # held out: no task sentence was seen at infusion
                continue
            example = syntax_example(tree, SYNTAX_LABELS[len(examples) % 3], syn_rng)
            if example is not None:
                seen.add(tree.text)
                examples.append(example)
        syn_rng.shuffle(examples)
        rel[f"task_syntax_{part}"] = examples

    paths: dict[str, Path] = {}
    counts: dict[str, int] = {"entities": sum(map(len, entities.values())), "facts": len(facts)}
    for name, records in rel.items():
        paths[name] = out / f"{name}.json"
        counts[name] = len(records)
        _write(paths[name], _json_records(records))
    for part, part_trees in trees.items():
        name = f"infuse_syntax_{part}"
        paths[name] = out / f"{name}.conllu"
        counts[name] = len(part_trees)
        _write(paths[name], "".join(grammar.to_conllu(t, f"{name}-{i:05d}")
                                    for i, t in enumerate(part_trees, 1)))
    lines = [marked_text(r) for recs in rel.values() for r in recs]
    lines += [t.text for part_trees in trees.values() for t in part_trees]
    corpus = list(dict.fromkeys(lines))
    paths["corpus"], counts["corpus"] = out / "corpus.txt", len(corpus)
    _write(paths["corpus"], "\n".join(corpus) + "\n")
    which = {(f.subj, f.relation, f.obj): part for part, fs in split.items() for f in fs}
    kb = {"entities": {k: sorted(v) for k, v in entities.items()},
          "facts": [{**asdict(f), "task_split": which[(f.subj, f.relation, f.obj)]} for f in facts]}
    paths["world_kb"] = out / "world_kb.json"
    _write(paths["world_kb"], json.dumps(kb, indent=1, ensure_ascii=False) + "\n")
    paths["manifest"] = out / "manifest.json"
    manifest = {"config": {f.name: getattr(config, f.name) for f in fields(config)},
                "counts": counts, "fact_labels": list(FACT_LABELS),
                "syntax_labels": list(SYNTAX_LABELS),
                "files": {k: p.name for k, p in paths.items()}}
    _write(paths["manifest"], json.dumps(manifest, indent=1) + "\n")
    return WorldFiles(out, paths, counts)


def main(argv: list[str] | None = None) -> None:
    """``python -m kadapt.quickstart.world OUT_DIR [--seed N ...]``: write a world, print counts."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    for f in fields(WorldConfig):
        if f.name != "syntax_task_sizes":
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                                default=f.default, help=f.metadata["help"])
    args = vars(parser.parse_args(argv))
    files = generate_world(args.pop("out_dir"), WorldConfig(**args))
    print(json.dumps({"out_dir": str(files.out_dir), "counts": files.counts}, indent=1))


if __name__ == "__main__":
    main()
