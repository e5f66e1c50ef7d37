"""Raw line access to plain or gzip-compressed data files, shared by every reader."""
from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kadapt.core.errors import DataError


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, transparently un-gzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_bytes)``; a corrupt gzip stream raises :class:`DataError`."""
    lineno = 0
    try:
        with open_binary(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                yield lineno, raw
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path, lineno + 1, f"cannot read compressed data: {exc}") from exc


def iter_json_objects(path: Path, policy) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file.

    A line that is not UTF-8, not JSON, or not a JSON object goes to ``policy`` (an
    :class:`~kadapt.data.policy.ErrorPolicy`): an error naming the file and line, or a counted skip.
    """
    for lineno, raw in iter_raw_lines(path):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            policy.handle(DataError(path, lineno, f"not UTF-8 ({err.reason})"), "bad encoding")
            continue
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            policy.handle(DataError(path, lineno, f"malformed JSON: {err.msg}"), "malformed JSON")
            continue
        if not isinstance(obj, dict):
            policy.handle(DataError(path, lineno, "expected a JSON object"), "malformed JSON")
            continue
        yield lineno, obj
