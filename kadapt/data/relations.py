"""Readers for relation-classification data: T-REx-rc/TACRED JSON, FewRel JSON, LAMA T-REx jsonl.

Every reader takes ``(path, policy=None)`` and yields :class:`RelationExample` records with character
spans into ``text``.  Each bad record becomes a :class:`DataError` naming the file and the line (or the
record index inside one JSON document) and goes through the :class:`ErrorPolicy` (default: raise).
Problems that make the whole file unreadable (not JSON at all, invalid UTF-8 inside a single JSON
document, a corrupt gzip stream, an empty file) always raise: no record could be isolated to skip.
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import RelationExample, gold_is_optional
from kadapt.data.textfile import iter_raw_lines, open_binary
from kadapt.core.errors import DataError

__all__ = ["read_trex_rc", "read_fewrel", "read_lama_trex", "read_lama_trex_dir"]

_MASK = "[MASK]"


class _Invalid(Exception):
    """A record failed validation; ``reason`` is a short category used for skip counts."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(detail or reason)
        self.reason = reason


# --------------------------------------------------------------------------- file access


def _decode_line(raw: bytes) -> str:
    """Strict UTF-8 decoding of one line (a leading BOM is dropped)."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise _Invalid("invalid UTF-8", f"invalid UTF-8 at byte {exc.start}") from None


def _read_document(path: Path) -> str:
    """Whole file as text; invalid UTF-8 is a file-level :class:`DataError` with its line."""
    with open_binary(path) as fh:
        try:
            data = fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(path, None, f"cannot read compressed data: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(path, line, f"invalid UTF-8 at byte {exc.start}") from None
    return text.lstrip("\ufeff")


def _parse_json_line(line: str) -> dict[str, Any]:
    """One JSON Lines record; it must be an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _Invalid("malformed JSON", f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise _Invalid("record is not a JSON object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------- field validation


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    """``obj[key]`` checked for presence and type (``bool`` never counts as ``int``)."""
    if key not in obj:
        raise _Invalid("missing key", f"missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Invalid("wrong type", f"key {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _label(obj: dict[str, Any], key: str) -> str:
    if gold_is_optional() and obj.get(key) in (None, ""):
        return ""  # unlabelled record, read for prediction
    label = _field(obj, key, str)
    if not label.strip():
        raise _Invalid("empty label", f"key {key!r} is empty")
    return label


def _tokens(value: list[Any], key: str) -> list[str]:
    """A non-empty list of non-empty strings."""
    if not value:
        raise _Invalid("empty text", f"key {key!r} is an empty token list")
    for i, tok in enumerate(value):
        if not isinstance(tok, str) or not tok:
            raise _Invalid("bad token", f"{key}[{i}] must be a non-empty string, got {tok!r}")
    return value


def _join_tokens(tokens: Sequence[str]) -> tuple[str, list[int]]:
    """Tokens joined by single spaces, plus the character offset where each token starts."""
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    return " ".join(tokens), starts


def _token_span(start: int, end: int, n: int, what: str) -> None:
    """Check an inclusive token span ``[start, end]`` against a sentence of ``n`` tokens."""
    if start > end:
        raise _Invalid("start > end", f"{what} start {start} > end {end}")
    if start < 0 or end >= n:
        raise _Invalid("span out of range", f"{what} span [{start}, {end}] outside 0..{n - 1}")


def _char_span(tokens: Sequence[str], starts: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """Character span ``[a, b)`` of the inclusive token span ``[start, end]``."""
    return starts[start], starts[end] + len(tokens[end])


def _check_disjoint(subj: tuple[int, int], obj: tuple[int, int]) -> None:
    if subj[0] < obj[1] and obj[0] < subj[1]:
        raise _Invalid("subject and object overlap", f"subject {subj} and object {obj} overlap")


# --------------------------------------------------------------------------- T-REx-rc / TACRED


def _trex_record(obj: Any, source: str) -> RelationExample:
    if not isinstance(obj, dict):
        raise _Invalid("record is not a JSON object", f"expected a JSON object, got {type(obj).__name__}")
    tokens = _tokens(_field(obj, "token", list), "token")
    idx = {k: _field(obj, k, int) for k in ("subj_start", "subj_end", "obj_start", "obj_end")}
    _token_span(idx["subj_start"], idx["subj_end"], len(tokens), "subject")
    _token_span(idx["obj_start"], idx["obj_end"], len(tokens), "object")
    label = _label(obj, "relation")
    text, starts = _join_tokens(tokens)
    subj = _char_span(tokens, starts, idx["subj_start"], idx["subj_end"])
    obj_span = _char_span(tokens, starts, idx["obj_start"], idx["obj_end"])
    _check_disjoint(subj, obj_span)
    return RelationExample(text, subj, obj_span, label, source)


def _first_char(path: Path) -> str:
    """First non-whitespace character of the file (after a BOM), or ``""`` for a blank file."""
    try:
        with open_binary(path) as fh:
            head = fh.read(3).lstrip(b"\xef\xbb\xbf")
            while chunk := head or fh.read(1 << 16):
                head = b""
                stripped = chunk.lstrip()
                if stripped:
                    return chr(stripped[0])
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path, None, f"cannot read compressed data: {exc}") from exc
    return ""


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(index, line, value)`` for each element of a top-level JSON array, with the line
    where the element starts.  Malformed JSON raises :class:`DataError` (file-level)."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def skip(pos: int) -> int:
        return ws.match(text, pos).end()  # type: ignore[union-attr]

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    pos = skip(0)
    if text[pos:pos + 1] != "[":
        raise DataError(path, line_of(pos), "expected a JSON array")
    pos, index, line, counted = skip(pos + 1), 0, 1, 0
    if text[pos:pos + 1] == "]":
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(path, exc.lineno, f"record #{index}: malformed JSON: {exc.msg}") from None
        yield index, line, value
        index += 1
        pos = skip(end)
        sep = text[pos:pos + 1]
        if sep == "]":
            if text[skip(pos + 1):].strip():
                raise DataError(path, line_of(pos + 1), "extra data after the JSON array")
            return
        if sep != ",":
            raise DataError(path, line_of(pos), f"expected ',' or ']' after record #{index - 1}")
        pos = skip(pos + 1)


def read_trex_rc(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[RelationExample]:
    """Read K-Adapter's T-REx-rc / TACRED format: a JSON array (or JSON Lines) of objects with
    ``token`` (list of str), inclusive token indices ``subj_start, subj_end, obj_start, obj_end`` and
    ``relation``; other keys (TACRED's types, POS, ...) are ignored.

    Text = tokens joined by single spaces.  ``source`` is ``"path:line"`` for JSON Lines and
    ``"path:#index"`` for array elements; errors inside an array name the element's starting line and
    its index.  ``*.gz`` files are read transparently.
    """
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    first = _first_char(path)
    if not first:
        raise DataError(path, None, "file is empty")
    if first not in "[{":
        raise DataError(path, None, f"expected a JSON array or JSON Lines objects, found {first!r}")
    with policy.scope(path):
        if first == "[":
            for index, line, value in _iter_json_array(path, _read_document(path)):
                try:
                    yield _trex_record(value, f"{path}:#{index}")
                except _Invalid as bad:
                    policy.handle(DataError(path, line, f"record #{index}: {bad}"), bad.reason)
        else:
            for lineno, raw in iter_raw_lines(path):
                try:
                    line_text = _decode_line(raw)
                    if not line_text.strip():
                        continue
                    yield _trex_record(_parse_json_line(line_text), f"{path}:{lineno}")
                except _Invalid as bad:
                    policy.handle(DataError(path, lineno, str(bad)), bad.reason)


# --------------------------------------------------------------------------- FewRel


def _fewrel_mention(entity: Any, key: str, n: int) -> tuple[int, int]:
    """First mention of a FewRel entity ``[name, qid, [[idx, ...], ...]]`` as inclusive token span."""
    if not isinstance(entity, list) or len(entity) < 3 or not isinstance(entity[2], list):
        raise _Invalid("wrong type", f"key {key!r} must be [name, id, [[token positions]]]")
    if not entity[2] or not isinstance(entity[2][0], list) or not entity[2][0]:
        raise _Invalid("missing mention", f"key {key!r} has no mention")
    positions = entity[2][0]
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in positions):
        raise _Invalid("wrong type", f"key {key!r}: token positions must be integers")
    start, end = positions[0], positions[-1]
    if list(positions) != list(range(start, start + len(positions))):
        raise _Invalid("non-contiguous mention",
                       f"key {key!r}: first mention {positions} is not contiguous")
    _token_span(start, end, n, key)
    return start, end


def read_fewrel(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[RelationExample]:
    """Read FewRel JSON ``{relation_id: [{"tokens", "h", "t"}, ...]}``: subject = first mention of
    ``h``, object = first mention of ``t`` (contiguous token positions), label = relation id,
    ``subj_id`` / ``obj_id`` = the Wikidata ids of ``h`` / ``t``.

    ``source`` is ``"path:RELATION#index"``; errors name the relation and instance index.
    """
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    text = _read_document(path)
    if not text.strip():
        raise DataError(path, None, "file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"malformed JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise DataError(path, None, "expected a JSON object {relation_id: [instances]}")
    with policy.scope(path):
        for rel, instances in doc.items():
            if not isinstance(instances, list):
                policy.handle(DataError(path, None, f"relation {rel!r}: expected a list of instances"),
                              "wrong type")
                continue
            for index, inst in enumerate(instances):
                try:
                    if not rel.strip():
                        raise _Invalid("empty label", "relation id is empty")
                    if not isinstance(inst, dict):
                        raise _Invalid("record is not a JSON object", "instance is not a JSON object")
                    tokens = _tokens(_field(inst, "tokens", list), "tokens")
                    hs, he = _fewrel_mention(_field(inst, "h", list), "h", len(tokens))
                    ts, te = _fewrel_mention(_field(inst, "t", list), "t", len(tokens))
                    sentence, starts = _join_tokens(tokens)
                    subj = _char_span(tokens, starts, hs, he)
                    obj = _char_span(tokens, starts, ts, te)
                    _check_disjoint(subj, obj)
                    yield RelationExample(sentence, subj, obj, rel, f"{path}:{rel}#{index}",
                                          _entity_id(inst["h"]), _entity_id(inst["t"]))
                except _Invalid as bad:
                    policy.handle(DataError(path, None, f"relation {rel!r} instance #{index}: {bad}"),
                                  bad.reason)


def _entity_id(entity: list) -> str:
    """The Wikidata id of a FewRel entity ``[name, qid, positions]`` (``""`` when it is not a string)."""
    return entity[1].strip() if isinstance(entity[1], str) else ""


# --------------------------------------------------------------------------- LAMA T-REx


def _find_outside(text: str, needle: str, avoid: tuple[int, int], flags: int) -> tuple[int, int] | None:
    """First occurrence of ``needle`` in ``text`` not overlapping ``avoid``, or ``None``."""
    pattern = re.compile(re.escape(needle), flags)
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        if m.end() <= avoid[0] or m.start() >= avoid[1]:
            return m.start(), m.end()
        pos = m.start() + 1
    return None


def _lama_evidence(evidence: Any, label: str, source: str, ids: tuple[str, str] = ("", "")) -> RelationExample:
    """Rebuild one LAMA evidence sentence: first ``[MASK]`` -> object surface; find the subject."""
    if not isinstance(evidence, dict):
        raise _Invalid("wrong type", "evidence is not a JSON object")
    masked = _field(evidence, "masked_sentence", str)
    sub = _field(evidence, "sub_surface", str)
    obj = _field(evidence, "obj_surface", str)
    if not masked.strip():
        raise _Invalid("empty text", "masked_sentence is empty")
    if not sub.strip() or not obj.strip():
        raise _Invalid("empty surface", "sub_surface or obj_surface is empty")
    at = masked.find(_MASK)
    if at < 0:
        raise _Invalid("no [MASK] in sentence", "masked_sentence has no [MASK]")
    text = masked[:at] + obj + masked[at + len(_MASK):]
    obj_span = (at, at + len(obj))
    subj_span = (_find_outside(text, sub, obj_span, 0)
                 or _find_outside(text, sub, obj_span, re.IGNORECASE))
    if subj_span is None:
        raise _Invalid("subject not found in sentence",
                       f"subject surface {sub!r} not found outside the object span")
    return RelationExample(text, subj_span, obj_span, label, source, *ids)


def _uri(fact: dict[str, Any], key: str) -> str:
    """``sub_uri`` / ``obj_uri`` of a LAMA fact (a QID, or a URL ending in one); ``""`` when absent."""
    value = fact.get(key)
    return value.strip().rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str) else ""


def read_lama_trex(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[RelationExample]:
    """Read a LAMA T-REx file (``P*.jsonl`` or ``P*.jsonl.gz``): one example per evidence sentence,
    label = the fact's ``predicate_id``; ``subj_id`` / ``obj_id`` = its ``sub_uri`` / ``obj_uri``.

    The sentence is ``masked_sentence`` with its first ``[MASK]`` replaced by ``obj_surface``; the
    subject is the first occurrence of ``sub_surface`` outside the object span (case-sensitive, then
    case-insensitive).  An evidence without ``[MASK]`` or whose subject cannot be found is a bad record
    (skipped one evidence at a time under ``"skip"``).  ``source`` is ``"path:line#evidence_index"``.
    """
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    with policy.scope(path):
        for lineno, raw in iter_raw_lines(path):
            try:
                line = _decode_line(raw)
                if not line.strip():
                    continue
                fact = _parse_json_line(line)
                label = _label(fact, "predicate_id")
                evidences = _field(fact, "evidences", list)
                ids = (_uri(fact, "sub_uri"), _uri(fact, "obj_uri"))
            except _Invalid as bad:
                policy.handle(DataError(path, lineno, str(bad)), bad.reason)
                continue
            for k, evidence in enumerate(evidences):
                try:
                    yield _lama_evidence(evidence, label, f"{path}:{lineno}#{k}", ids)
                except _Invalid as bad:
                    policy.handle(DataError(path, lineno, f"evidence #{k}: {bad}"), bad.reason)


def _relation_files(directory: Path) -> dict[str, Path]:
    """``{"P19": path}`` for every ``P*.jsonl`` / ``P*.jsonl.gz`` (plain file wins over gzip)."""
    found: dict[str, Path] = {}
    for pattern in ("P*.jsonl.gz", "P*.jsonl"):
        for file in directory.glob(pattern):
            found[file.name.split(".", 1)[0]] = file
    return found


def read_lama_trex_dir(directory: str | Path, relations: Iterable[str] | None = None,
                       policy: ErrorPolicy | None = None) -> Iterator[RelationExample]:
    """Read every LAMA T-REx relation file in ``directory`` (sorted by property number), or only
    ``relations`` (e.g. ``["P19", "P20"]``, in that order); a requested relation without a file is a
    :class:`DataError`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(directory, None, "not a directory")
    files = _relation_files(directory)
    if relations is None:
        if not files:
            raise DataError(directory, None, "no P*.jsonl or P*.jsonl.gz files")
        wanted = sorted(files, key=lambda r: (int(r[1:]) if r[1:].isdigit() else 1 << 62, r))
    else:
        wanted = list(relations)
        missing = [r for r in wanted if r not in files]
        if missing:
            raise DataError(directory, None, f"no file for relation(s) {', '.join(missing)} "
                            f"(available: {', '.join(sorted(files)) or 'none'})")
    policy = ErrorPolicy.resolve(policy)
    for rel in wanted:
        yield from read_lama_trex(files[rel], policy)
