"""Typed records that every reader yields and every encoder consumes.

Spans are character offsets ``[start, end)`` into ``text``; ``source`` is ``"file:line"``
(or ``"file:#index"`` for records inside one JSON document) so errors further down can point
back at the input.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RelationExample:
    """One sentence with a marked subject and object and the relation label between them."""

    text: str
    subj_span: tuple[int, int]
    obj_span: tuple[int, int]
    label: str
    source: str = ""


@dataclass(frozen=True)
class DependencyExample:
    """One sentence as syntactic words with their heads (1-based word index; 0 = root)."""

    words: tuple[str, ...]
    heads: tuple[int, ...]
    source: str = ""


@dataclass(frozen=True)
class EntityTypingExample:
    """One sentence with a marked entity mention and its (possibly empty) set of type labels."""

    text: str
    span: tuple[int, int]
    labels: tuple[str, ...]
    source: str = ""
