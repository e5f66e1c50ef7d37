"""Reader for SearchQA and Quasar-T as K-Adapter uses them: the DS-QA release of Lin et al. (2018),
with the paragraphs Wang et al. (2017) retrieved for each question.

One split is two sibling files (either may be named in a recipe):

* ``SPLIT.txt``: JSON lines ``{"question": str, "answers": [str, ...]}``, one per question;
* ``SPLIT.json``: one JSON array of ``{"question": str, "document": paragraph}`` objects (a paragraph is
  a string or a list of tokens, joined by spaces); the paragraphs of a question are those whose
  ``question`` equals it (an element may also be a list of such objects: one question's group).

Each question becomes one :class:`~kadapt.data.records.OpenQAExample` with its paragraphs in file order.
A bad line, a question without paragraphs or paragraphs for an unknown question is a
:class:`DataError` naming the file and line (or array index), or a counted skip under ``on_error: skip``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import OpenQAExample
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError

__all__ = ["read_open_qa", "split_files"]


def split_files(path: str | Path) -> tuple[Path, Path]:
    """``(SPLIT.txt, SPLIT.json)`` for a recipe path naming either of them."""
    path = Path(path)
    if path.suffix not in (".txt", ".json"):
        raise DataError(path, None, "a DS-QA split is SPLIT.txt (questions, answers) + SPLIT.json (paragraphs); "
                        f"got a {path.suffix or 'suffix-less'} file")
    return path.with_suffix(".txt"), path.with_suffix(".json")


def _paragraph(obj: object) -> tuple[str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
        raise ValueError("expected an object with a string 'question' and a 'document'")  # noqa: TRY004 (a data error)
    doc = obj.get("document")
    if isinstance(doc, list) and all(isinstance(t, str) for t in doc):
        doc = " ".join(doc)
    if not isinstance(doc, str):
        raise ValueError("'document' must be a string or a list of token strings")  # noqa: TRY004 (a data error)
    return obj["question"], doc


def _paragraphs(path: Path, policy: ErrorPolicy) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, list):
        raise DataError(path, None, f"expected a JSON array of {{question, document}} objects, got {type(data).__name__}")
    by_question: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        for j, obj in enumerate(item if isinstance(item, list) else [item]):
            try:
                question, doc = _paragraph(obj)
            except ValueError as exc:
                where = f"[{i}]" + (f"[{j}]" if isinstance(item, list) else "")
                policy.handle(DataError(path, None, f"record {where}: {exc}"), "bad paragraph")
                continue
            by_question.setdefault(question, []).append(doc)
    return by_question


def read_open_qa(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[OpenQAExample]:
    """Yield one :class:`OpenQAExample` per question of the DS-QA split that ``path`` names."""
    questions_file, paragraphs_file = split_files(path)
    policy = ErrorPolicy.resolve(policy)
    for f in (questions_file, paragraphs_file):
        if not f.is_file():
            raise DataError(f, None, "missing: a DS-QA split needs both SPLIT.txt and SPLIT.json")
    with policy.scope(questions_file):
        paragraphs = _paragraphs(paragraphs_file, policy)
        seen: set[str] = set()
        for lineno, raw in iter_raw_lines(questions_file):
            try:
                obj = json.loads(raw.decode("utf-8").lstrip("\ufeff"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                if not raw.strip():
                    continue
                policy.handle(DataError(questions_file, lineno, f"not a JSON line: {exc}"), "malformed JSON")
                continue
            question, answers = (obj.get("question"), obj.get("answers")) if isinstance(obj, dict) else (None, None)
            if not isinstance(question, str) or not isinstance(answers, list) or not answers \
                    or not all(isinstance(a, str) and a.strip() for a in answers):
                policy.handle(DataError(questions_file, lineno, "expected {\"question\": str, \"answers\": "
                                        "[non-empty str, ...]}"), "bad question")
                continue
            if question not in paragraphs:
                policy.handle(DataError(questions_file, lineno, f"question {question[:60]!r} has no paragraphs in "
                                        f"{paragraphs_file.name}"), "no paragraphs")
                continue
            seen.add(question)
            yield OpenQAExample(f"{questions_file.stem}-{lineno}", question, tuple(paragraphs[question]),
                                tuple((a, -1) for a in answers), f"{questions_file}:{lineno}")
        orphans = len(paragraphs.keys() - seen)
        if orphans and not seen:
            raise DataError(paragraphs_file, None, f"none of its {orphans} questions is in {questions_file.name}")
