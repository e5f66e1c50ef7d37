"""Entity linking for text without entity ids: a deterministic longest-match dictionary linker.

Any callable ``linker(text) -> [Mention]`` (character spans + entity ids of the KG) can be used by
JAKET; :class:`EntityLinker` is that interface, so a user can wrap their own (e.g. a spaCy
``EntityLinker`` pipeline) without changing the plug-in. :class:`DictionaryLinker` is the built-in one:
the KG's entity names (plus optional aliases, any language) are case-folded word sequences; the text is
cut into words (``\\w+`` runs and single punctuation marks, so a match never starts or ends inside a
word) and scanned left to right, taking at each position the longest name that matches (up to
``max_words`` words). A name shared by several entities goes to the first entity listed (KG order),
so the output depends on nothing but the text and the dictionary.

:func:`linker_scores` measures a linker against gold mentions (FewRel / LAMA T-REx subject and object
spans with their Wikidata ids).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kadapt.core.errors import KadaptError
from kadapt.data.mentions import Mention

__all__ = ["EntityLinker", "DictionaryLinker", "LinkerConfig", "linker_scores"]

_WORD = re.compile(r"\w+|[^\w\s]")


@runtime_checkable
class EntityLinker(Protocol):
    """What JAKET needs from a linker: character-span mentions with KG entity ids."""

    def __call__(self, text: str) -> Sequence[Mention]: ...


@dataclass(frozen=True)
class LinkerConfig:
    """``min_chars``: shortest name linked (skips "a", "I"); ``max_words``: longest name tried;
    ``case_fold``: compare case-folded; ``skip_names``: names never linked (case-folded)."""

    min_chars: int = 3
    max_words: int = 8
    case_fold: bool = True
    skip_names: tuple[str, ...] = ("the", "and", "for", "from", "with", "his", "her", "was", "has", "one", "two")

    @classmethod
    def from_dict(cls, data: Mapping | None, source: str = "linker") -> LinkerConfig:
        data = dict(data or {})
        known = {"min_chars", "max_words", "case_fold", "skip_names"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KadaptError(f"{source}: unknown linker key(s) {unknown}; known: {sorted(known)}")
        if "skip_names" in data:
            data["skip_names"] = tuple(data["skip_names"])
        return cls(**data)


def _norm(word: str, case_fold: bool) -> str:
    word = unicodedata.normalize("NFKC", word)
    return word.casefold() if case_fold else word


@dataclass
class DictionaryLinker:
    """Longest match over entity names and aliases (see the module doc)."""

    names: dict[tuple[str, ...], str] = field(default_factory=dict)  # word sequence -> entity id
    config: LinkerConfig = field(default_factory=LinkerConfig)
    ambiguous: int = 0  # names listed for more than one entity (the first one kept)

    @classmethod
    def from_names(cls, entries: Iterable[tuple[str, str]], config: LinkerConfig | None = None) -> DictionaryLinker:
        """From ``(entity_id, name)`` pairs, in priority order (first entity wins a shared name)."""
        linker = cls(config=config or LinkerConfig())
        skip = {_norm(n, True) for n in linker.config.skip_names}
        for entity_id, name in entries:
            words = tuple(_norm(w, linker.config.case_fold) for w in _WORD.findall(name or ""))
            if not words or len(words) > linker.config.max_words or len("".join(words)) < linker.config.min_chars:
                continue
            if " ".join(words).casefold() in skip:
                continue
            owner = linker.names.setdefault(words, entity_id)
            linker.ambiguous += owner != entity_id
        return linker

    @classmethod
    def from_graph(cls, graph, aliases: Mapping[str, Sequence[str]] | None = None,
                   config: LinkerConfig | None = None) -> DictionaryLinker:
        """Names of a :class:`~kadapt.kg.KnowledgeGraph` first, then ``aliases`` (entity id -> names)
        of entities the graph has."""
        known = set(graph.entity_ids)
        entries = list(zip(graph.entity_ids, graph.entity_names))
        entries += [(e, a) for e, names in (aliases or {}).items() if e in known for a in names]
        return cls.from_names(entries, config)

    def __call__(self, text: str) -> list[Mention]:
        words = [(m.start(), m.end(), _norm(m.group(), self.config.case_fold)) for m in _WORD.finditer(text)]
        out, i = [], 0
        while i < len(words):
            for n in range(min(self.config.max_words, len(words) - i), 0, -1):
                entity = self.names.get(tuple(w for _, _, w in words[i:i + n]))
                if entity is not None:
                    out.append(Mention(words[i][0], words[i + n - 1][1], entity))
                    i += n
                    break
            else:
                i += 1
        return out


def linker_scores(linker, examples: Iterable) -> dict[str, float | int]:
    """Precision / recall of ``linker`` on the gold subject and object mentions of relation examples
    with ids. A gold mention is found when a predicted mention has its exact span and id (recall);
    precision is over predicted mentions that overlap a gold span (other predictions cannot be judged:
    the gold data marks only two entities per sentence). ``span_recall`` ignores the id."""
    gold_n = tp = span_hit = judged = judged_ok = 0
    for ex in examples:
        gold = [Mention(*ex.subj_span, ex.subj_id), Mention(*ex.obj_span, ex.obj_id)]
        gold = [g for g in gold if g.entity_id]
        if not gold:
            continue
        pred = list(linker(ex.text))
        exact = {(m.start, m.end): m.entity_id for m in pred}
        for g in gold:
            gold_n += 1
            span_hit += (g.start, g.end) in exact
            tp += exact.get((g.start, g.end)) == g.entity_id
        for m in pred:
            match = [g for g in gold if m.start < g.end and g.start < m.end]
            if match:
                judged += 1
                judged_ok += any(g.start == m.start and g.end == m.end and g.entity_id == m.entity_id for g in match)
    precision = judged_ok / judged if judged else 0.0
    recall = tp / gold_n if gold_n else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"gold_mentions": gold_n, "predicted_on_gold": judged, "precision": precision, "recall": recall,
            "f1": f1, "span_recall": span_hit / gold_n if gold_n else 0.0}
