"""Reader for Open Entity (the Ultra-Fine Entity Typing *crowd* split, Choi et al. 2018).

Each line is a JSON object with ``mention_span``, ``left_context_token``, ``right_context_token`` and
``y_str``. As ERNIE / K-Adapter / LUKE use it, the sentence is ``left + [mention] + right`` joined by
single spaces and the labels are ``y_str`` restricted to the 9 general types (the first 9 lines of
the release's ``ontology/types.txt``); an example may have none of them (it keeps an empty label set).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import EntityTypingExample
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError

__all__ = ["GENERAL_TYPES", "read_open_entity"]

#: The 9 general types of the Ultra-Fine Entity Typing ontology (the first 9 lines of types.txt), sorted.
GENERAL_TYPES = ("entity", "event", "group", "location", "object", "organization", "person", "place", "time")


def _string_list(obj: dict, key: str) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"key {key!r} must be a list of strings")
    return value


def _example(obj: object, types: frozenset[str] | None, source: str) -> EntityTypingExample:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")  # noqa: TRY004 (a data error)
    mention = obj.get("mention_span")
    if not isinstance(mention, str) or not mention.strip():
        raise ValueError("key 'mention_span' must be a non-empty string")
    left = [t for t in _string_list(obj, "left_context_token") if t]
    right = [t for t in _string_list(obj, "right_context_token") if t]
    gold = _string_list(obj, "y_str")
    prefix = " ".join(left)
    start = len(prefix) + (1 if prefix else 0)
    text = " ".join(part for part in (prefix, mention, " ".join(right)) if part)
    labels = tuple(sorted({t for t in gold if types is None or t in types}))
    return EntityTypingExample(text, (start, start + len(mention)), labels, source)


def read_open_entity(path: str | Path, policy: ErrorPolicy | None = None,
                     types: tuple[str, ...] | None = GENERAL_TYPES) -> Iterator[EntityTypingExample]:
    """Yield one :class:`EntityTypingExample` per line; ``types=None`` keeps every ``y_str`` label.

    A line that is not valid UTF-8/JSON, lacks a key or has a wrong type is a :class:`DataError`
    naming the file and line (or a counted skip under ``on_error="skip"``).
    """
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    keep = frozenset(types) if types is not None else None
    seen = False
    with policy.scope(path):
        for lineno, raw in iter_raw_lines(path):
            try:
                line = raw.decode("utf-8").lstrip("\ufeff")
            except UnicodeDecodeError as exc:
                policy.handle(DataError(path, lineno, f"invalid UTF-8 at byte {exc.start}"), "invalid UTF-8")
                continue
            if not line.strip():
                continue
            seen = True
            try:
                yield _example(json.loads(line), keep, f"{path}:{lineno}")
            except json.JSONDecodeError as exc:
                policy.handle(DataError(path, lineno, f"malformed JSON: {exc.msg} at column {exc.colno}"),
                              "malformed JSON")
            except ValueError as exc:
                policy.handle(DataError(path, lineno, str(exc)), "bad record")
    if not seen:
        raise DataError(path, None, "file is empty")
