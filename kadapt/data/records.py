"""Typed records that every reader yields and every encoder consumes.

Spans are character offsets ``[start, end)`` into ``text``; ``source`` is ``"file:line"``
(or ``"file:#index"`` for records inside one JSON document) so errors further down can point
back at the input.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RelationExample:
    """One sentence with a marked subject and object and the relation label between them.

    ``subj_id`` / ``obj_id``: the entities' ids (Wikidata QIDs for FewRel and LAMA T-REx) when the
    reader knows them, ``""`` otherwise; a knowledge plug-in links the spans to its KG through them."""

    text: str
    subj_span: tuple[int, int]
    obj_span: tuple[int, int]
    label: str
    source: str = ""
    subj_id: str = ""
    obj_id: str = ""


@dataclass(frozen=True)
class DependencyExample:
    """One sentence as syntactic words with their heads (1-based word index; 0 = root)."""

    words: tuple[str, ...]
    heads: tuple[int, ...]
    source: str = ""
    upos: tuple[str, ...] = ()  # UPOS column per word (CoNLL-U), for POS tagging
    lines: tuple[int, ...] = ()  # input line of each word, for errors that name it


@dataclass(frozen=True)
class TaggingExample:
    """One sentence as words with one tag per word (UPOS, or BIO entity tags for NER)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    source: str = ""


@dataclass(frozen=True)
class QAExample:
    """Extractive QA (SQuAD v1.1 / MLQA): answers are ``(text, char_start)`` spans of ``context``."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]
    language: str = "en"
    source: str = ""


@dataclass(frozen=True)
class OpenQAExample:
    """Open-domain QA (SearchQA / Quasar-T, DS-QA release): a question, its retrieved ``paragraphs`` and
    the gold answer strings as ``(text, -1)`` pairs (-1: not located in any paragraph; distant
    supervision finds them)."""

    id: str
    question: str
    paragraphs: tuple[str, ...]
    answers: tuple[tuple[str, int], ...]
    source: str = ""


@dataclass(frozen=True)
class MultipleChoiceExample:
    """CosmosQA-style: a context, a question and candidate answers; ``label`` indexes the right one."""

    id: str
    context: str
    question: str
    choices: tuple[str, ...]
    label: int | None
    source: str = ""


@dataclass(frozen=True)
class SentencePairExample:
    """Sentence(-pair) classification (XNLI): ``text_b`` is ``None`` for single sentences."""

    text_a: str
    text_b: str | None
    label: str | None
    language: str = "en"
    source: str = ""


@dataclass(frozen=True)
class ClozeExample:
    """A LAMA query: ``text`` holds one ``[MASK]`` where the object ``answer`` goes."""

    id: str
    text: str
    answer: str
    relation: str = ""
    source: str = ""


@dataclass(frozen=True)
class TextExample:
    """One line of raw text as whitespace-separated words (e.g. WikiText-2 for the LAMA probe's MLM layer)."""

    words: tuple[str, ...]
    source: str = ""


@dataclass(frozen=True)
class EntityTypingExample:
    """One sentence with a marked entity mention and its (possibly empty) set of type labels."""

    text: str
    span: tuple[int, int]
    labels: tuple[str, ...]
    source: str = ""


def record_label(record) -> str:
    """The label a record is stratified by (``data.limit``): its class, relation or first type; ""
    for records without one (dependency trees, tagged sentences, QA)."""
    if isinstance(record, (RelationExample, SentencePairExample, MultipleChoiceExample)):
        return "" if record.label is None else str(record.label)
    if isinstance(record, ClozeExample):
        return record.relation
    if isinstance(record, EntityTypingExample):
        return "|".join(sorted(record.labels))
    return ""


_GOLD_OPTIONAL = contextvars.ContextVar("kadapt_gold_optional", default=False)


@contextlib.contextmanager
def gold_optional():
    """Inside this block, readers accept records without a gold label (``kadapt predict`` on new data):
    the label is then ``""`` (no gold)."""
    token = _GOLD_OPTIONAL.set(True)
    try:
        yield
    finally:
        _GOLD_OPTIONAL.reset(token)


def gold_is_optional() -> bool:
    return _GOLD_OPTIONAL.get()
