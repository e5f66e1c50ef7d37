"""A strict CoNLL-U reader (https://universaldependencies.org/format.html) yielding basic trees.

Each sentence becomes a :class:`DependencyExample` of its syntactic words and their HEADs.
By the format's definition, multiword-token lines (``3-4``) are not tree nodes (their syntactic words
are) and empty nodes (``5.1``) belong only to the enhanced graph; both are read, checked for shape and
left out of the basic tree -- they are not errors.  Everything else is validated: 10 TAB-separated
fields, word IDs ``1..n`` in order, HEAD an integer in ``0..n`` other than the word itself, exactly one
root, no cycles, UTF-8 text.  A violation is a :class:`DataError` naming the file and line; under a
``"skip"`` policy the whole sentence is dropped and counted.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import DependencyExample
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError

__all__ = ["read_conllu"]

_N_FIELDS = 10
_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*")
_HEAD = re.compile(r"0|[1-9][0-9]*")


class _BadSentence(Exception):
    """A sentence is invalid at ``line``; ``reason`` is a short category for skip counts."""

    def __init__(self, line: int, reason: str, detail: str):
        super().__init__(detail)
        self.line = line
        self.reason = reason


@dataclass
class _Sentence:
    """Words of the sentence being read, with the line each word came from."""

    start_line: int
    words: list[str] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)
    upos: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    next_range_start: int = 1  # the first word ID a multiword-token range may start at
    has_tokens: bool = False


def _add_token_line(sent: _Sentence, line: str, lineno: int) -> None:
    """Validate one token line and add it to ``sent`` if it is a syntactic word."""
    cols = line.split("\t")
    if len(cols) != _N_FIELDS:
        raise _BadSentence(lineno, "wrong field count",
                           f"expected {_N_FIELDS} TAB-separated fields, got {len(cols)}")
    sent.has_tokens = True
    tid, form, head = cols[0], cols[1], cols[6]
    if not form:
        raise _BadSentence(lineno, "empty field", "FORM is empty")
    expected = len(sent.words) + 1
    if _WORD_ID.fullmatch(tid):
        if int(tid) != expected:
            raise _BadSentence(lineno, "bad ID", f"word ID {tid} out of order (expected {expected})")
        if not _HEAD.fullmatch(head):
            raise _BadSentence(lineno, "bad head", f"HEAD {head!r} is not a non-negative integer")
        if int(head) == expected:
            raise _BadSentence(lineno, "bad head", f"word {tid} is its own head")
        sent.words.append(form)
        sent.heads.append(int(head))
        sent.upos.append(cols[3])
        sent.lines.append(lineno)
        sent.next_range_start = max(sent.next_range_start, expected + 1)
        return
    if m := _RANGE_ID.fullmatch(tid):
        first, last = int(m.group(1)), int(m.group(2))
        if first != expected or first < sent.next_range_start or last <= first:
            raise _BadSentence(lineno, "bad ID", f"multiword token range {tid} is invalid here "
                               f"(next word ID is {expected})")
        sent.next_range_start = last + 1  # ranges must not overlap
        return
    if m := _EMPTY_ID.fullmatch(tid):
        if int(m.group(1)) != expected - 1:
            raise _BadSentence(lineno, "bad ID", f"empty node {tid} out of order "
                               f"(expected {expected - 1}.N)")
        return
    raise _BadSentence(lineno, "bad ID", f"invalid ID {tid!r}")


def _finish(sent: _Sentence, end_line: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Check tree-level constraints (heads in range, one root, acyclic) of a complete sentence."""
    n = len(sent.words)
    if n == 0:
        raise _BadSentence(end_line, "empty sentence", "sentence has no words")
    if sent.next_range_start > n + 1:
        raise _BadSentence(end_line, "bad ID",
                           f"multiword token range goes past the last word ID {n}")
    roots = [i for i, h in enumerate(sent.heads) if h == 0]
    for i, h in enumerate(sent.heads):
        if h > n:
            raise _BadSentence(sent.lines[i], "bad head", f"HEAD {h} outside 0..{n}")
    if len(roots) != 1:
        where = sent.lines[roots[1]] if roots else sent.start_line
        raise _BadSentence(where, "root count",
                           f"sentence has {len(roots)} roots (HEAD 0); exactly one is required")
    state = [0] * (n + 1)  # 0 = unvisited, 1 = on current path, 2 = reaches the root
    state[0] = 2
    for start in range(1, n + 1):
        path, node = [], start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = sent.heads[node - 1]
        if state[node] == 1:
            raise _BadSentence(sent.lines[node - 1], "cycle",
                               f"heads form a cycle through word {node}")
        for visited in path:
            state[visited] = 2
    return tuple(sent.words), tuple(sent.heads)


def _decode(raw: bytes, lineno: int) -> str:
    """Strict UTF-8 decoding of one line, without its line end (LF or CRLF)."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise _BadSentence(lineno, "invalid UTF-8",
                           f"invalid UTF-8 at byte {exc.start} of the line") from None


def read_conllu(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[DependencyExample]:
    """Yield one :class:`DependencyExample` per sentence of a CoNLL-U file (``*.gz`` accepted).

    ``source`` is ``"path:line"`` of the sentence's first line (comment or token).  A final sentence
    without a trailing blank line is accepted.  Comment lines are allowed only before a sentence's
    first token line; CRLF line ends are tolerated.
    """
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    sent: _Sentence | None = None
    broken = False  # the current sentence already failed; ignore its lines until the blank line
    lineno = 0

    def finished(done: _Sentence, end_line: int) -> DependencyExample | None:
        try:
            words, heads = _finish(done, end_line)
        except _BadSentence as bad:
            policy.handle(DataError(path, bad.line, str(bad)), bad.reason)
            return None
        return DependencyExample(words, heads, f"{path}:{done.start_line}", tuple(done.upos), tuple(done.lines))

    with policy.scope(path):
        for lineno, raw in iter_raw_lines(path):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte-order mark
            if not raw.strip():  # blank line: the sentence (if any) ends here
                done, was_broken = sent, broken
                sent, broken = None, False
                if done is not None and not was_broken:
                    if (example := finished(done, lineno)) is not None:
                        yield example
                continue
            if sent is None:
                sent = _Sentence(start_line=lineno)
            if broken:
                continue
            try:
                line = _decode(raw, lineno)
                if not line.startswith("#"):
                    _add_token_line(sent, line, lineno)
                elif sent.has_tokens:
                    raise _BadSentence(lineno, "comment inside sentence",
                                       "comment line after the sentence's token lines")
            except _BadSentence as err:
                broken = True
                policy.handle(DataError(path, err.line, str(err)), err.reason)
        if sent is not None and not broken:
            if (example := finished(sent, lineno)) is not None:
                yield example
