"""What a reader does with a bad record: raise at once, or skip it and count why.

Readers never decide this themselves; they build a :class:`~kadapt.core.errors.DataError` for every bad
record and hand it to an :class:`ErrorPolicy`.  Under ``"raise"`` (the default) the error propagates;
under ``"skip"`` the record is dropped, counted by reason, the first few are logged at WARNING, and a
per-file summary is logged when the reader finishes the file -- skips are never silent.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from kadapt.core.errors import DataError

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
_MODES = ("raise", "skip")


def _reason_of(err: DataError) -> str:
    """``err.reason`` when the raiser set one (a short category), else the message of ``err``
    without its ``path:line:`` prefix (used when no reason is given)."""
    if getattr(err, "reason", None):
        return err.reason
    text = str(err)
    where = f"{err.path}:{err.line}" if err.line is not None else err.path
    prefix = f"{where}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _format_counts(counts: Counter[str]) -> str:
    """``"reason a: 3, reason b: 1"``, most frequent first."""
    return ", ".join(f"{reason}: {n}" for reason, n in counts.most_common())


class ErrorPolicy:
    """Decides what happens to a bad record: ``on_error="raise"`` or ``"skip"`` (count and log).

    ``max_warnings`` bounds how many individual skips are logged at WARNING; all are counted.
    One policy may be shared by several readers/files; counts accumulate.
    """

    def __init__(self, on_error: OnError = "raise", *, max_warnings: int = 5,
                 log: logging.Logger | None = None):
        if on_error not in _MODES:
            raise ValueError(f"on_error must be one of {_MODES}, got {on_error!r}")
        if max_warnings < 0:
            raise ValueError(f"max_warnings must be >= 0, got {max_warnings}")
        self.on_error: OnError = on_error
        self.max_warnings = max_warnings
        self._log = log or logger
        self._counts: Counter[str] = Counter()

    @classmethod
    def resolve(cls, policy: ErrorPolicy | OnError | None) -> ErrorPolicy:
        """``None`` -> a fresh raising policy; a mode string -> a fresh policy; a policy -> itself."""
        if policy is None:
            return cls("raise")
        if isinstance(policy, str):
            return cls(policy)  # type: ignore[arg-type]
        if isinstance(policy, ErrorPolicy):
            return policy
        raise TypeError(f"policy must be an ErrorPolicy, 'raise', 'skip' or None, got {policy!r}")

    @property
    def skipped(self) -> int:
        """Total number of records skipped so far."""
        return sum(self._counts.values())

    def handle(self, err: DataError, reason: str | None = None) -> None:
        """Raise ``err`` (mode ``"raise"``) or count it under ``reason`` and return (mode ``"skip"``).

        ``reason`` is a short category such as ``"span out of range"``; it defaults to the error
        message without its location.
        """
        if self.on_error == "raise":
            raise err
        key = reason or _reason_of(err)
        self._counts[key] += 1
        n = self.skipped
        if n <= self.max_warnings:
            self._log.warning("skipping record: %s", err)
            if n == self.max_warnings:
                self._log.warning("further skipped records are counted but not logged one by one")

    def summary(self) -> dict[str, int]:
        """Skipped-record counts by reason, most frequent first."""
        return dict(self._counts.most_common())

    def log_summary(self, log: logging.Logger | None = None) -> None:
        """Log ``"skipped N records (reason: n, ...)"`` at WARNING, or nothing-skipped at INFO."""
        log = log or self._log
        if self._counts:
            log.warning("skipped %d records (%s)", self.skipped, _format_counts(self._counts))
        else:
            log.info("skipped 0 records")

    @contextmanager
    def scope(self, path: object) -> Iterator[None]:
        """Log, when the block ends, how many records were skipped inside it and why (per file)."""
        before = Counter(self._counts)
        try:
            yield
        finally:
            delta = self._counts - before
            if delta:
                self._log.warning("%s: skipped %d records (%s)", path, sum(delta.values()),
                                  _format_counts(delta))
