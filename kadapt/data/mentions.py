"""Linked entity mentions: character spans with an entity id, mapped to a ``token_entities`` row.

``token_entities`` (one int per token: the mention's entity row in a knowledge graph, -1 elsewhere) is
what a knowledge plug-in that merges entity embeddings at mention tokens (JAKET) reads from the batch.
Mentions come from a reader (FewRel / LAMA T-REx carry Wikidata ids for subject and object) or from an
entity linker; :func:`token_entities` maps them through a KG's ``id -> row`` map. Nothing here is an
error: a mention whose span lies outside the text, whose id the KG does not know, that overlaps an
earlier (longer) mention or that truncation cut off is counted in :class:`LinkStats`, which logs one
line per split.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Mention", "LinkStats", "EntityLinking", "token_entities", "without_overlaps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mention:
    """Characters ``[start, end)`` of a text that name entity ``entity_id`` (e.g. a Wikidata QID)."""

    start: int
    end: int
    entity_id: str


@dataclass
class LinkStats:
    """What linking did over one split: instances with >=1 / all gold mentions linked, and every
    mention dropped, by reason (``outside_text``, ``unknown_id``, ``overlapping``, ``truncated``)."""

    split: str = ""
    instances: int = 0
    instances_any: int = 0  # >= 1 target linked to a KG row
    instances_all: int = 0  # every target (relation: subject and object) linked
    mentions: int = 0
    linked: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    unknown_examples: list[str] = field(default_factory=list)
    logged: bool = False

    def drop(self, reason: str, entity_id: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if reason == "unknown_id" and len(self.unknown_examples) < 3 and entity_id not in self.unknown_examples:
            self.unknown_examples.append(entity_id)

    def instance(self, targets: Sequence[bool]) -> None:
        """Count one instance whose targets (relation: subject, object) were linked or not."""
        self.instances += 1
        self.instances_any += any(targets)
        self.instances_all += bool(targets) and all(targets)

    def coverage(self) -> dict[str, float | int]:
        n = max(self.instances, 1)
        return {"instances": self.instances, "any_linked": self.instances_any / n,
                "all_linked": self.instances_all / n, "mentions": self.mentions, "linked": self.linked,
                **{f"dropped_{k}": v for k, v in sorted(self.dropped.items())}}

    def __str__(self) -> str:
        cov = self.coverage()
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        unknown = f" (e.g. {', '.join(self.unknown_examples)})" if self.unknown_examples else ""
        return (f"{self.split or 'split'}: {self.instances} instances, {cov['any_linked']:.1%} with >=1 and "
                f"{cov['all_linked']:.1%} with every target linked; {self.linked}/{self.mentions} mentions "
                f"linked; dropped: {dropped}{unknown}")

    def log_once(self, logger: logging.Logger = log) -> None:
        """One INFO line for the split (WARNING when mentions were dropped); later calls do nothing."""
        if not self.logged:
            self.logged = True
            logger.log(logging.WARNING if self.dropped else logging.INFO, "entity linking %s", self)


def token_entities(offsets: Sequence[tuple[int, int]], special: Sequence[int], text_length: int,
                   mentions: Sequence[Mention], rows: Mapping[str, int],
                   stats: LinkStats | None = None) -> list[int]:
    """Entity row per token (``-1`` elsewhere) from character-span ``mentions`` of a text of
    ``text_length`` characters whose tokens have ``offsets`` (``special``: 1 for special tokens).

    Mentions are taken longest first (ties: leftmost, then input order), so of two overlapping mentions
    the longer one wins and the other is counted as ``overlapping``. Instances are counted by the
    caller (:meth:`LinkStats.instance`)."""
    stats = stats if stats is not None else LinkStats()
    out = [-1] * len(offsets)
    order = sorted(range(len(mentions)), key=lambda i: (-(mentions[i].end - mentions[i].start), mentions[i].start, i))
    taken: list[tuple[int, int]] = []
    for i in order:
        m = mentions[i]
        stats.mentions += 1
        if not 0 <= m.start < m.end <= text_length:
            stats.drop("outside_text")
            continue
        if m.entity_id not in rows:
            stats.drop("unknown_id", m.entity_id)
            continue
        if any(m.start < e and s < m.end for s, e in taken):
            stats.drop("overlapping")
            continue
        hit = [t for t, ((s, e), sp) in enumerate(zip(offsets, special)) if not sp and s < e and s < m.end and m.start < e]
        if not hit:
            stats.drop("truncated")
            continue
        taken.append((m.start, m.end))
        for t in hit:
            out[t] = rows[m.entity_id]
        stats.linked += 1
    return out


def without_overlaps(mentions: Sequence[Mention], keep: Sequence[Mention]) -> list[Mention]:
    """``mentions`` that overlap none of ``keep`` (a linker's mentions beside a reader's gold ones)."""
    return [m for m in mentions if not any(m.start < k.end and k.start < m.end for k in keep)]


@dataclass
class EntityLinking:
    """How an encoder produces ``token_entities``: the KG's ``id -> row`` map, the reader's ids (used
    first) and an optional linker ``linker(text) -> [Mention]`` for text (or entities) without ids;
    ``stats`` counts what happened over the split being encoded."""

    rows: Mapping[str, int]
    linker: object = None  # callable(text) -> Sequence[Mention]
    use_ids: bool = True
    stats: LinkStats = field(default_factory=LinkStats)
    history: dict[str, LinkStats] = field(default_factory=dict)

    def start(self, split: str) -> None:
        """Begin counting a new split (the previous one's line is logged)."""
        if self.stats.instances:
            self.stats.log_once()
        self.stats = self.history[split] = LinkStats(split=split)

    def report(self) -> dict[str, dict]:
        """Coverage per split counted so far (each split's line logged once)."""
        for stats in self.history.values():
            if stats.instances:
                stats.log_once()
        return {name: stats.coverage() for name, stats in self.history.items()}

    def mentions(self, text: str, gold: Sequence[Mention]) -> list[Mention]:
        """Gold mentions with an id (when ``use_ids``), then the linker's that overlap none of those the
        KG knows (a gold id unknown to the KG is counted and leaves its span to the linker)."""
        gold = [m for m in gold if m.entity_id] if self.use_ids else []
        found = list(self.linker(text)) if self.linker is not None else []
        return gold + without_overlaps(found, [m for m in gold if m.entity_id in self.rows])
