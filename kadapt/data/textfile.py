"""Raw line access to plain or gzip-compressed data files, shared by every reader."""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kadapt.errors import DataError


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
