"""Reader for FIGER (Ling & Weld 2012) in the form K-Adapter and ERNIE fine-tune on.

The file is one JSON array (or JSON lines) of objects ``{"sent": str, "start": int, "end": int,
"labels": [str, ...]}``: ``sent[start:end]`` is the mention (character offsets) and ``labels`` its
FIGER types (``/person``, ``/person/artist``, ... 113 in all). The label inventory comes from the
training data (or an explicit ``objective.config.labels`` list). Extra keys (ERNIE's ``ents``) are
ignored. A bad record is a :class:`DataError` naming the file and its line (JSON lines) or the
array index (one JSON array), or a counted skip under ``on_error: skip``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import EntityTypingExample
from kadapt.core.errors import DataError

__all__ = ["read_figer"]


def _example(obj: object, source: str) -> EntityTypingExample:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object with sent/start/end/labels, got {type(obj).__name__}")  # noqa: TRY004
    sent, start, end, labels = obj.get("sent"), obj.get("start"), obj.get("end"), obj.get("labels")
    if not isinstance(sent, str) or not sent.strip():
        raise ValueError("key 'sent' must be a non-empty string")
    if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
        raise ValueError("keys 'start' and 'end' must be integers (character offsets into 'sent')")  # noqa: TRY004 (a data error)
    if not 0 <= start < end <= len(sent):
        raise ValueError(f"mention span [{start}, {end}) is outside the sentence of {len(sent)} characters")
    if not isinstance(labels, list) or not labels or not all(isinstance(t, str) and t for t in labels):
        raise ValueError("key 'labels' must be a non-empty list of type strings")
    return EntityTypingExample(sent, (start, end), tuple(sorted(set(labels))), source)


def _records(path: Path, text: str) -> Iterator[tuple[int | None, str, object]]:
    """(line, where, parsed-or-error) for a JSON array or JSON lines."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, exc.lineno, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
        for i, obj in enumerate(data):
            yield None, f"{path}[{i}]", obj
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, f"{path}:{lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, f"{path}:{lineno}", DataError(path, lineno, f"malformed JSON: {exc.msg} at column {exc.colno}")


def read_figer(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[EntityTypingExample]:
    """Yield one :class:`EntityTypingExample` per FIGER mention."""
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"invalid UTF-8 at byte {exc.start}") from None
    if not text.strip():
        raise DataError(path, None, "file is empty")
    with policy.scope(path):
        for lineno, where, obj in _records(path, text):
            if isinstance(obj, DataError):
                policy.handle(obj, "malformed JSON")
                continue
            try:
                yield _example(obj, where)
            except ValueError as exc:
                msg = str(exc) if lineno is not None else f"record {where[len(str(path)):]}: {exc}"
                policy.handle(DataError(path, lineno, msg), "bad record")
