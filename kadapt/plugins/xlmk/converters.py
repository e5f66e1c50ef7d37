"""Converters from the real sets in ``../shared/data`` to the multilingual knowledge format.

None of these sets ships long entity descriptions (the paper's first 256 tokens of a Wikipedia page);
what stands in for them is said per converter:

* :func:`convert_mpararel` — mParaRel facts (Wikidata ids, labels in 8 languages) + translated
  templates → mention sentences: the template with ``[X]`` = subject label and ``[Y]`` = object label
  in the same language; the object is the mention. Descriptions: the entity's **label** in each
  language (an object gets its label in another language, so the task becomes cross-lingual entity
  recognition from context). Triples: every fact once, ``(sub_uri, P.., obj_uri)``.
* :func:`convert_lama_trex` — LAMA T-REx evidence sentences (English): ``[MASK]`` filled with the
  object surface (mention = object) and, when the subject surface occurs, a second mention for the
  subject. Descriptions: the English labels, plus every other-language label from mParaRel
  when ``mpararel`` is given (joined on Wikidata ids), so descriptions can be cross-lingual.
* :func:`convert_dbp15k` — DBP15K ``<lang>_en``: no sentences (no mentions). Descriptions: the entity
  **name** (the URI tail, ``_`` → space, percent-decoded); the DBpedia abstracts are not in the copy.
  The 4,500 seed pairs (``sup_pairs``) are merged into one entity with a name in each language;
  the 10,500 test pairs (``ref_pairs``) stay two separate entities, so nothing of the test alignment
  leaks. Triples: both KGs' triples with their (language-specific) DBpedia property as relation.

Each converter returns a :class:`~kadapt.plugins.xlmk.data.KnowledgeWriter`; ``write(folder)`` saves it.
Facts are held out by a stable hash of ``(relation, lineid)`` so the same fact is held out in every
language (``part="train"``/``"test"``; ``holdout`` is the test fraction).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote

from kadapt.plugins.xlmk.data import KnowledgeWriter, stable_hash
from kadapt.data.policy import ErrorPolicy
from kadapt.data.textfile import iter_json_objects, iter_raw_lines
from kadapt.core.errors import DataError, KadaptError

log = logging.getLogger(__name__)

MPARAREL_LANGUAGES = ("en", "de", "fr", "ru", "el", "ar", "zh-hans", "ja")


def in_part(relation: str, lineid, part: str, holdout: float) -> bool:
    """Is fact ``(relation, lineid)`` in ``part`` (``all``, ``train`` or ``test``)?"""
    if part == "all":
        return True
    if part not in ("train", "test"):
        raise KadaptError(f"part must be 'all', 'train' or 'test', got {part!r}")
    test = (stable_hash(f"{relation}:{lineid}") % 10_000) < holdout * 10_000
    return test == (part == "test")


def read_patterns(path: Path, policy: ErrorPolicy | str | None = None) -> list[str]:
    """Templates with both ``[X]`` and ``[Y]``; human-checked ones when there are any."""
    policy = ErrorPolicy.resolve(policy)
    checked, other = [], []
    for line, obj in iter_json_objects(path, policy):
        pattern = obj.get("pattern")
        if not isinstance(pattern, str) or pattern.count("[X]") != 1 or pattern.count("[Y]") != 1:
            policy.handle(DataError(path, line, f"template needs one [X] and one [Y]: {pattern!r}"), "bad template")
            continue
        (checked if obj.get("checked-by-human") else other).append(pattern)
    return checked or other


def fill_template(pattern: str, subject: str, obj: str) -> tuple[str, int, int]:
    """The sentence and the object's character span."""
    x, y = pattern.index("[X]"), pattern.index("[Y]")
    if x < y:
        head = pattern[:x] + subject + pattern[x + 3:y]
        return head + obj + pattern[y + 3:], len(head), len(head) + len(obj)
    head = pattern[:y]
    return head + obj + pattern[y + 3:x] + subject + pattern[x + 3:], len(head), len(head) + len(obj)


@dataclass
class MparaFact:
    relation: str
    lineid: int
    subject: str
    object: str
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # lang → (sub_label, obj_label)


def read_mpararel_facts(root: str | Path, languages=MPARAREL_LANGUAGES, relations=None,
                        policy: ErrorPolicy | None = None) -> dict[tuple[str, int], MparaFact]:
    """``(relation, lineid) → fact`` with its labels in each language that has it."""
    root, policy = Path(root), ErrorPolicy.resolve(policy)
    facts: dict[tuple[str, int], MparaFact] = {}
    for lang in languages:
        folder = root / "tuples" / lang
        if not folder.is_dir():
            raise KadaptError(f"{folder}: no mParaRel tuples for language {lang!r}")
        for path in sorted(folder.glob("P*.jsonl*")):
            relation = path.name.split(".")[0]
            if relations and relation not in relations:
                continue
            for line, obj in iter_json_objects(path, policy):
                keys = ("sub_uri", "obj_uri", "sub_label", "obj_label", "lineid")
                if any(k not in obj for k in keys) or not all(isinstance(obj[k], str) and obj[k] for k in keys[:4]):
                    policy.handle(DataError(path, line, f"fact lacks one of {list(keys)}"), "incomplete fact")
                    continue
                fact = facts.setdefault((relation, obj["lineid"]),
                                        MparaFact(relation, obj["lineid"], obj["sub_uri"], obj["obj_uri"]))
                fact.labels[lang] = (obj["sub_label"], obj["obj_label"])
    return facts


def convert_mpararel(root: str | Path, languages=MPARAREL_LANGUAGES, *, relations=None, part: str = "all",
                     holdout: float = 0.1, max_facts: int | None = None,
                     policy: ErrorPolicy | None = None) -> KnowledgeWriter:
    """mParaRel → mentions (templates filled with labels), label descriptions and triples."""
    root, policy = Path(root), ErrorPolicy.resolve(policy)
    facts = read_mpararel_facts(root, languages, relations, policy)
    patterns: dict[tuple[str, str], list[str]] = {}
    for lang in languages:
        for path in sorted((root / "patterns" / lang).glob("P*.jsonl")):
            patterns[(lang, path.stem)] = read_patterns(path, policy)
    out, stats = KnowledgeWriter.empty(), Counter()
    # facts in a stable pseudo-random order, so that a prefix (``max_facts``, a recipe's ``limit``) spans relations
    chosen = sorted((f for f in facts.values() if in_part(f.relation, f.lineid, part, holdout)),
                    key=lambda f: stable_hash(f"{f.relation}:{f.lineid}"))[:max_facts]
    for fact in chosen:
        out.add_triple(fact.subject, fact.relation, fact.object)
        for lang, (sub_label, obj_label) in sorted(fact.labels.items()):
            out.add_description(fact.subject, lang, sub_label)
            out.add_description(fact.object, lang, obj_label)
            options = patterns.get((lang, fact.relation))
            if not options:
                stats["no template"] += 1
                continue
            pattern = options[stable_hash(f"{lang}:{fact.relation}:{fact.lineid}") % len(options)]
            text, start, end = fill_template(pattern, sub_label, obj_label)
            out.add_mention(text, start, end, fact.object, lang)
            stats["mentions"] += 1
    log.info("mParaRel %s (%s): %d facts, %s", root, part, len(chosen), dict(stats))
    return out


def convert_lama_trex(root: str | Path, *, mpararel: str | Path | None = None, part: str = "all",
                      holdout: float = 0.1, max_evidences: int = 2,
                      policy: ErrorPolicy | None = None) -> KnowledgeWriter:
    """LAMA T-REx evidences → English mention sentences (+ other-language labels from mParaRel)."""
    root, policy = Path(root), ErrorPolicy.resolve(policy)
    trex = root / "TREx" if (root / "TREx").is_dir() else root
    out = KnowledgeWriter.empty()
    for path in sorted(trex.glob("P*.jsonl*")):
        for line, obj in iter_json_objects(path, policy):
            try:
                relation = obj["predicate_id"]
                sub, ob = obj["sub_uri"], obj["obj_uri"]
                sub_label, obj_label = obj["sub_label"], obj["obj_label"]
            except KeyError as err:
                policy.handle(DataError(path, line, f"fact lacks key {err}"), "incomplete fact")
                continue
            if not in_part(relation, line - 1, part, holdout):
                continue
            out.add_triple(sub, relation, ob)
            out.add_description(sub, "en", sub_label)
            out.add_description(ob, "en", obj_label)
            for evidence in (obj.get("evidences") or [])[:max_evidences]:
                masked, surface = evidence.get("masked_sentence", ""), evidence.get("obj_surface", "")
                if masked.count("[MASK]") != 1 or not surface:
                    policy.handle(DataError(path, line, "evidence needs one [MASK] and an obj_surface"), "bad evidence")
                    continue
                start = masked.index("[MASK]")
                text = masked.replace("[MASK]", surface, 1)
                out.add_mention(text, start, start + len(surface), ob, "en")
                sub_surface = evidence.get("sub_surface") or ""
                at = text.find(sub_surface) if sub_surface else -1
                if at >= 0 and not (at < start + len(surface) and start < at + len(sub_surface)):
                    out.add_mention(text, at, at + len(sub_surface), sub, "en")
    if mpararel is not None:
        wanted = {e for e, _ in out.descriptions}
        languages = tuple(sorted(p.name for p in (Path(mpararel) / "tuples").iterdir() if p.is_dir()))
        for fact in read_mpararel_facts(mpararel, languages, policy=policy).values():
            for lang, (sub_label, obj_label) in fact.labels.items():
                if fact.subject in wanted:
                    out.add_description(fact.subject, lang, sub_label)
                if fact.object in wanted:
                    out.add_description(fact.object, lang, obj_label)
    return out


def dbpedia_name(uri: str) -> str:
    """``http://zh.dbpedia.org/resource/金大中`` → ``金大中``; ``Kim_Dae-jung`` → ``Kim Dae-jung``."""
    return unquote(uri.rstrip("/").rsplit("/", 1)[-1]).replace("_", " ").strip()


@dataclass
class DBP15KPair:
    """One DBP15K language pair as read from disk."""

    lang: str
    uris: dict[int, str]
    kg_of: dict[int, int]
    relations: dict[int, str]
    triples: list[tuple[int, int, int]]
    seed_pairs: list[tuple[int, int]]
    test_pairs: list[tuple[int, int]]


def _tsv(path: Path, columns: int, policy: ErrorPolicy):
    for line, raw in iter_raw_lines(path):
        parts = raw.decode("utf-8", errors="strict").rstrip("\n").split("\t")
        if len(parts) != columns:
            policy.handle(DataError(path, line, f"expected {columns} tab-separated columns, got {len(parts)}"))
            continue
        yield line, parts


def read_dbp15k(pair_dir: str | Path, policy: ErrorPolicy | None = None) -> DBP15KPair:
    folder, policy = Path(pair_dir), ErrorPolicy.resolve(policy)
    lang = folder.name.split("_")[0]
    if not (folder / "ent_ids_1").is_file():
        raise KadaptError(f"{folder}: not a DBP15K pair folder (no ent_ids_1)")
    uris, kg_of, relations, triples = {}, {}, {}, []
    for kg in (1, 2):
        for _, (eid, uri) in _tsv(folder / f"ent_ids_{kg}", 2, policy):
            uris[int(eid)], kg_of[int(eid)] = uri, kg
        for _, (rid, uri) in _tsv(folder / f"rel_ids_{kg}", 2, policy):
            relations[int(rid)] = uri
        for line, (h, r, t) in _tsv(folder / f"triples_{kg}", 3, policy):
            h, r, t = int(h), int(r), int(t)
            if h not in uris or t not in uris or r not in relations:
                policy.handle(DataError(folder / f"triples_{kg}", line, f"unknown entity or relation id in {h} {r} {t}"))
                continue
            triples.append((h, r, t))

    def pairs(name: str) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for _, (a, b) in _tsv(folder / name, 2, policy)]

    return DBP15KPair(lang, uris, kg_of, relations, triples, pairs("sup_pairs"), pairs("ref_pairs"))


def convert_dbp15k(pair_dir: str | Path, *, max_triples: int | None = None, policy: ErrorPolicy | None = None,
                   ) -> tuple[KnowledgeWriter, DBP15KPair]:
    """DBP15K pair → name descriptions (seed pairs merged), both KGs' triples; no mentions."""
    data = read_dbp15k(pair_dir, policy)
    merged = {a: data.uris[b] for a, b in data.seed_pairs}  # KG1 seed entity → the English URI
    out = KnowledgeWriter.empty()

    def entity(eid: int) -> str:
        return merged.get(eid, data.uris[eid])

    for eid, uri in sorted(data.uris.items()):
        out.add_description(entity(eid), data.lang if data.kg_of[eid] == 1 else "en", dbpedia_name(uri))
    triples = data.triples
    if max_triples is not None and len(triples) > max_triples:
        # prefer triples whose object has a name in both languages (cross-lingual object entailment)
        seeds = set(merged) | {b for _, b in data.seed_pairs}
        triples = sorted(triples, key=lambda t: (t[2] not in seeds, stable_hash(f"{t}")))[:max_triples]
    for h, r, t in triples:
        out.add_triple(entity(h), data.relations[r], entity(t))
    return out, data


def read_knowledge_source(path: str | Path, policy: ErrorPolicy | None = None) -> list:
    """Records of a knowledge folder, or of a raw mParaRel root / LAMA folder / DBP15K pair folder
    (converted on the fly with the defaults above; part ``all``)."""
    import tempfile

    from kadapt.plugins.xlmk.data import find_file, read_knowledge

    path, policy = Path(path), ErrorPolicy.resolve(policy)
    if find_file(path, "mentions") or find_file(path, "triples"):
        return list(read_knowledge(path, policy))
    if (path / "tuples").is_dir() and (path / "patterns").is_dir():
        writer = convert_mpararel(path, policy=policy)
    elif (path / "TREx").is_dir() or any(path.glob("P*.jsonl.gz")):
        writer = convert_lama_trex(path, policy=policy)
    elif (path / "ent_ids_1").is_file():
        writer, _ = convert_dbp15k(path, policy=policy)
    else:
        raise KadaptError(f"{path}: neither a multilingual knowledge folder nor an mParaRel, LAMA or DBP15K folder")
    with tempfile.TemporaryDirectory(prefix="kadapt-knowledge-") as tmp:
        writer.write(tmp)
        records = list(read_knowledge(tmp, policy))
    # name the source set (and the converted file's line) in later errors, not the vanished folder
    return [replace(r, source=r.source.replace(tmp, f"{path} (converted)", 1)) for r in records]
