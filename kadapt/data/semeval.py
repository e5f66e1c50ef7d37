"""Reader for the SemEval-2010 Task 8 text format (Hendrickx et al., 2010).

Blocks of lines separated by blank lines (CRLF or LF)::

    1<TAB>"The system ... an arrayed <e1>configuration</e1> of antenna <e2>elements</e2>."
    Component-Whole(e2,e1)
    Comment: Not a collection: there is structure here, organisation.

The tags are removed; ``e1`` becomes the subject span and ``e2`` the object span (argument order),
so the direction stays in the label (``Cause-Effect(e1,e2)`` vs ``Cause-Effect(e2,e1)``).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import RelationExample
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError

__all__ = ["SEMEVAL_RELATIONS", "read_semeval2010"]

#: The 9 relation types of SemEval-2010 Task 8; labels are ``TYPE(e1,e2)``, ``TYPE(e2,e1)`` or ``Other``.
SEMEVAL_RELATIONS = ("Cause-Effect", "Component-Whole", "Content-Container", "Entity-Destination",
                     "Entity-Origin", "Instrument-Agency", "Member-Collection", "Message-Topic",
                     "Product-Producer")
_LABEL = re.compile(r"^(?:Other|(" + "|".join(SEMEVAL_RELATIONS) + r")\((e1,e2|e2,e1)\))$")
_SENTENCE = re.compile(r'^(\d+)\t"(.*)"$')
_TAG = re.compile(r"</?e[12]>")


def _strip_tags(marked: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Sentence without ``<e1>``/``<e2>`` tags and the character spans of e1 and e2."""
    text, spans, opened, pos = [], {}, {}, 0
    for m in _TAG.finditer(marked):
        text.append(marked[pos:m.start()])
        at = sum(len(t) for t in text)
        tag = m.group()
        name = tag.strip("</>")
        if tag.startswith("</"):
            if name not in opened or name in spans:
                raise ValueError(f"unbalanced {tag}")
            spans[name] = (opened[name], at)
        else:
            if name in opened:
                raise ValueError(f"repeated {tag}")
            opened[name] = at
        pos = m.end()
    text.append(marked[pos:])
    if set(spans) != {"e1", "e2"}:
        raise ValueError("sentence must mark exactly one <e1>...</e1> and one <e2>...</e2>")
    sentence = "".join(text)
    for name, (a, b) in spans.items():
        if not sentence[a:b].strip():
            raise ValueError(f"<{name}> mention is empty")
    return sentence, spans["e1"], spans["e2"]


def read_semeval2010(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[RelationExample]:
    """Yield one :class:`RelationExample` per block; ``source`` is ``"path:line"`` of the sentence.

    A malformed sentence line, unbalanced tags or an unknown label is a :class:`DataError` naming the
    file and line (or a counted skip under ``on_error="skip"``). A trailing ``Comment:`` line is optional.
    """
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    block: list[tuple[int, str]] = []
    seen = False

    def flush() -> Iterator[RelationExample]:
        lineno, first = block[0]
        try:
            m = _SENTENCE.match(first)
            if m is None:
                raise ValueError('expected <id><TAB>"<sentence>"')
            if len(block) < 2:
                raise ValueError("sentence without a label line")
            label_line, label = block[1]
            if _LABEL.match(label) is None:
                raise DataError(path, label_line, f"unknown label {label!r}")
            extra = [n for n, t in block[2:] if not t.startswith("Comment:")]
            if extra:
                raise DataError(path, extra[0], "unexpected line (expected 'Comment: ...' or a blank line)")
            sentence, e1, e2 = _strip_tags(m.group(2))
        except ValueError as exc:
            err = exc if isinstance(exc, DataError) else DataError(path, lineno, str(exc))
            policy.handle(err, "bad block")
            return
        yield RelationExample(sentence, e1, e2, label, f"{path}:{lineno}")

    with policy.scope(path):
        for lineno, raw in iter_raw_lines(path):
            try:
                line = raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                policy.handle(DataError(path, lineno, f"invalid UTF-8 at byte {exc.start}"), "invalid UTF-8")
                continue
            if line.strip():
                block.append((lineno, line))
                seen = True
            elif block:
                yield from flush()
                block = []
        if block:
            yield from flush()
    if not seen:
        raise DataError(path, None, "file is empty")
