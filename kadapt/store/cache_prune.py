"""Collecting hidden-state cache entries: least recently used first, by age or down to a size budget.

An entry's last use is its folder's modification time: :func:`kadapt.store.hidden_cache.open_or_build`
sets it each time a run reads the entry (and a build sets it too). ``kadapt cache prune`` removes
interrupted partial builds, entries unused for ``older_than_days``, and then the least recently used
complete entries until the cache fits ``max_bytes``. An entry a running process is building is never
touched.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kadapt.core.errors import KadaptError
from kadapt.store import hidden_cache as cache

log = logging.getLogger(__name__)
DAY = 86400.0


@dataclass
class PrunePlan:
    """What :func:`prune` removes (or would remove, with ``dry_run``) and what it keeps."""

    cache_dir: str
    removed: list[dict] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(e["bytes"] for e in self.removed)

    @property
    def kept_bytes(self) -> int:
        return sum(e["bytes"] for e in self.kept)


def _last_used(root: Path, entry: dict) -> float:
    try:
        return (root / entry["entry"]).stat().st_mtime
    except OSError:
        return 0.0


def plan_prune(cache_dir: str | Path | None = None, *, max_bytes: int | None = None,
               older_than_days: float | None = None, now: float | None = None) -> PrunePlan:
    """Decide which entries go: interrupted partial builds, entries unused for more than
    ``older_than_days``, then least recently used ones until the rest fits ``max_bytes``."""
    if max_bytes is None and older_than_days is None:
        raise KadaptError("cache prune: give --max-size and/or --older-than (or use `kadapt cache clear`)")
    if max_bytes is not None and max_bytes < 0:
        raise KadaptError(f"cache prune: --max-size must be >= 0, got {max_bytes}")
    if older_than_days is not None and older_than_days < 0:
        raise KadaptError(f"cache prune: --older-than must be >= 0 days, got {older_than_days}")
    info = cache.describe(cache_dir)
    root, now = Path(info["cache_dir"]), time.time() if now is None else now
    plan = PrunePlan(info["cache_dir"])
    candidates = []
    for entry in info["entries"]:
        entry = {**entry, "last_used": _last_used(root, entry)}
        if entry["state"].startswith("being built"):
            plan.kept.append(entry)
        elif entry["state"].startswith("partial build"):
            plan.removed.append({**entry, "why": "interrupted partial build"})
        elif older_than_days is not None and now - entry["last_used"] > older_than_days * DAY:
            plan.removed.append({**entry, "why": f"unused for {(now - entry['last_used']) / DAY:.1f} days"})
        else:
            candidates.append(entry)
    candidates.sort(key=lambda e: e["last_used"], reverse=True)  # most recent first: they stay
    total = sum(e["bytes"] for e in plan.kept)
    for entry in candidates:
        if max_bytes is not None and total + entry["bytes"] > max_bytes:
            plan.removed.append({**entry, "why": f"least recently used beyond the {human_size(max_bytes)} budget"})
        else:
            plan.kept.append(entry)
            total += entry["bytes"]
    return plan


def prune(cache_dir: str | Path | None = None, *, max_bytes: int | None = None,
          older_than_days: float | None = None, dry_run: bool = False, now: float | None = None) -> PrunePlan:
    """Remove what :func:`plan_prune` selects (nothing with ``dry_run``); returns the plan."""
    plan = plan_prune(cache_dir, max_bytes=max_bytes, older_than_days=older_than_days, now=now)
    for entry in plan.removed if not dry_run else []:
        log.info("cache prune: removing %s (%s)", entry["entry"], entry["why"])
        shutil.rmtree(Path(plan.cache_dir) / entry["entry"], ignore_errors=True)
    return plan


def human_size(n: int) -> str:
    """Bytes in the largest decimal unit that keeps a number >= 1 (``2.6 kB``, ``1.5 GB``)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def parse_size(text: str) -> int:
    """``"500MB"``, ``"2G"``, ``"1.5GiB"`` or a byte count -> bytes; one line on anything else."""
    units = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
             "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    stripped = text.strip().upper()
    number = stripped.rstrip("KMGTIB")
    unit = stripped[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value < 0:
        raise KadaptError(f"cache prune: --max-size {text!r} is not a size (e.g. 500MB, 2GB, 1.5GiB, 0)")
    return int(value * units[unit])
