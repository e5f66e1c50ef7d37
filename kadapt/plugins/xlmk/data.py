"""The multilingual knowledge format read by XLM-K infusion (format name ``xlmk_knowledge``).

A knowledge folder holds up to three JSON-lines files (each may be gzip-compressed as ``*.jsonl.gz``):

``mentions.jsonl``
    ``{"text": "Dante was born in Florence .", "start": 18, "end": 26, "entity": "Q2044", "lang": "en"}``
    A sentence with one entity mention: ``[start, end)`` are character offsets into ``text``.
``descriptions.jsonl``
    ``{"entity": "Q2044", "lang": "de", "text": "Florenz, Hauptstadt der Toskana"}``
    At most one description per (entity, language). The paper uses the first 256 tokens of the
    entity's Wikipedia page; converters say what stands in for it when a set has none.
``triples.jsonl``
    ``{"subject": "Q1067", "relation": "P19", "object": "Q2044"}``
    Relations are language-agnostic ids (the objective gives each one a lookup embedding).

Entity ids are free strings (Wikidata QIDs, DBpedia URIs, ...); language codes are lower-case
tags such as ``en``, ``zh-hans`` (a malformed code is a :class:`~kadapt.core.errors.DataError`; a
well-formed code seen nowhere else is accepted: language only steers which description is paired).

Reading yields one training record per mention (:class:`MentionExample`) and per triple
(:class:`TripleExample`), interleaved (mention 0, triple 0, mention 1, ...) so that ``limit``
keeps both tasks. Following the paper, a mention's description is taken from a language other
than the sentence's when the entity has one; a triple's subject and object texts come from two
different languages when available. The choice among several languages is a stable hash of the
record's position, so it is the same in every process and every run. A mention or triple whose
entity has no description at all is a ``DataError`` naming the file and line (counted and skipped
under ``on_error: skip``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.textfile import iter_json_objects
from kadapt.core.errors import DataError, KadaptError
from kadapt.core.fileio import atomic_write_text

log = logging.getLogger(__name__)

MENTIONS, DESCRIPTIONS, TRIPLES = "mentions", "descriptions", "triples"
_LANG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")


@dataclass(frozen=True)
class MentionExample:
    """Masked entity prediction: a sentence, the mention span, and a description of its entity."""

    text: str
    span: tuple[int, int]
    entity: str
    lang: str
    description: str
    description_lang: str
    source: str = ""


@dataclass(frozen=True)
class TripleExample:
    """Object entailment: subject description + relation → object description."""

    subject: str
    relation: str
    object: str
    subject_text: str
    subject_lang: str
    object_text: str
    object_lang: str
    source: str = ""


def stable_hash(text: str) -> int:
    """A non-negative 63-bit integer from ``text``, identical in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def check_lang(code, path, line) -> str:
    if not isinstance(code, str) or not _LANG.match(code):
        raise DataError(path, line, f"bad language code {code!r} (expected a lower-case tag like 'en' or 'zh-hans')")
    return code


def find_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _string(obj: dict, key: str, path, line) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, line, f"key {key!r} must be a non-empty string, got {value!r}")
    return value


def read_descriptions(path: Path, policy: ErrorPolicy) -> dict[str, dict[str, str]]:
    """``entity → {lang: text}``; a second description for the same (entity, lang) is an error."""
    table: dict[str, dict[str, str]] = {}
    for line, obj in iter_json_objects(path, policy):
        try:
            entity, text = _string(obj, "entity", path, line), _string(obj, "text", path, line)
            lang = check_lang(obj.get("lang"), path, line)
            if lang in table.get(entity, {}):
                raise DataError(path, line, f"second description of entity {entity!r} in language {lang!r}")
        except DataError as err:
            policy.handle(err)
            continue
        table.setdefault(entity, {})[lang] = text
    return table


def pick_language(available: Iterable[str], avoid: str | None, key: str) -> str:
    """A language of ``available`` other than ``avoid`` when there is one (stable choice by ``key``)."""
    langs = sorted(available)
    others = [lang for lang in langs if lang != avoid] or langs
    return others[stable_hash(key) % len(others)]


def _describe(table: dict, entity: str, what: str, path: Path, line: int, desc_path) -> dict[str, str]:
    found = table.get(entity)
    if not found:
        raise DataError(path, line, f"{what} entity {entity!r} has no description in {desc_path or 'descriptions.jsonl (absent)'}")
    return found


def read_mentions(path: Path, table: dict, policy: ErrorPolicy, desc_path, stats: Counter) -> Iterator[MentionExample]:
    for line, obj in iter_json_objects(path, policy):
        try:
            text, entity = _string(obj, "text", path, line), _string(obj, "entity", path, line)
            lang = check_lang(obj.get("lang"), path, line)
            start, end = obj.get("start"), obj.get("end")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                raise DataError(path, line, f"mention span [{start}, {end}) outside the {len(text)}-character text")
            found = _describe(table, entity, "mention", path, line, desc_path)
        except DataError as err:
            policy.handle(err)
            continue
        desc_lang = pick_language(found, lang, f"{path.name}:{line}")
        stats["mentions"] += 1
        stats["cross-lingual descriptions" if desc_lang != lang else "same-language descriptions"] += 1
        yield MentionExample(text, (start, end), entity, lang, found[desc_lang], desc_lang, f"{path}:{line}")


def read_triples(path: Path, table: dict, policy: ErrorPolicy, desc_path, stats: Counter) -> Iterator[TripleExample]:
    for line, obj in iter_json_objects(path, policy):
        try:
            subj, rel, obj_id = (_string(obj, k, path, line) for k in ("subject", "relation", "object"))
            subj_found = _describe(table, subj, "subject", path, line, desc_path)
            obj_found = _describe(table, obj_id, "object", path, line, desc_path)
        except DataError as err:
            policy.handle(err)
            continue
        key = f"{path.name}:{line}"
        subj_lang = pick_language(subj_found, None, key + ":s")
        obj_lang = pick_language(obj_found, subj_lang, key + ":o")
        stats["triples"] += 1
        stats["cross-lingual triples" if obj_lang != subj_lang else "same-language triples"] += 1
        yield TripleExample(subj, rel, obj_id, subj_found[subj_lang], subj_lang, obj_found[obj_lang], obj_lang,
                            f"{path}:{line}")


def read_knowledge(folder: str | Path, policy: ErrorPolicy | None = None) -> Iterator[MentionExample | TripleExample]:
    """Training records of a knowledge folder: mentions and triples interleaved."""
    folder = Path(folder)
    policy = ErrorPolicy.resolve(policy)
    if not folder.is_dir():
        raise KadaptError(f"{folder}: a multilingual knowledge folder (mentions/descriptions/triples.jsonl) is expected")
    desc_path, ment_path, trip_path = (find_file(folder, s) for s in (DESCRIPTIONS, MENTIONS, TRIPLES))
    if ment_path is None and trip_path is None:
        raise KadaptError(f"{folder}: neither mentions.jsonl nor triples.jsonl found")
    with policy.scope(folder):
        table = read_descriptions(desc_path, policy) if desc_path else {}
        stats: Counter[str] = Counter()
        streams = [read_mentions(ment_path, table, policy, desc_path, stats) if ment_path else iter(()),
                   read_triples(trip_path, table, policy, desc_path, stats) if trip_path else iter(())]
        yield from _interleave(streams)
        log.info("%s: %s", folder, ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no records")


def _interleave(streams: list[Iterator]) -> Iterator:
    live = list(streams)
    while live:
        for stream in list(live):
            try:
                yield next(stream)
            except StopIteration:
                live.remove(stream)


@dataclass
class KnowledgeWriter:
    """Collects mentions, descriptions and triples and writes a knowledge folder (atomic files)."""

    mentions: list[dict]
    descriptions: dict[tuple[str, str], str]
    triples: list[dict]

    @classmethod
    def empty(cls) -> KnowledgeWriter:
        return cls([], {}, [])

    def add_description(self, entity: str, lang: str, text: str) -> None:
        """First description of (entity, lang) wins; blank texts are not stored."""
        if text and text.strip():
            self.descriptions.setdefault((entity, lang), text.strip())

    def add_mention(self, text: str, start: int, end: int, entity: str, lang: str) -> None:
        self.mentions.append({"text": text, "start": start, "end": end, "entity": entity, "lang": lang})

    def add_triple(self, subject: str, relation: str, obj: str) -> None:
        self.triples.append({"subject": subject, "relation": relation, "object": obj})

    def write(self, folder: str | Path) -> dict[str, int]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        rows = {
            MENTIONS: self.mentions,
            DESCRIPTIONS: [{"entity": e, "lang": lang, "text": t} for (e, lang), t in self.descriptions.items()],
            TRIPLES: self.triples,
        }
        for stem, items in rows.items():
            if items:
                atomic_write_text(folder / f"{stem}.jsonl",
                                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
        return {stem: len(items) for stem, items in rows.items()}
