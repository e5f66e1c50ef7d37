"""Task metrics as Hugging Face ``evaluate`` modules kept inside the package.

Hub metrics cannot be loaded offline, so each metric lives in its own folder here
(``kadapt/metrics/<name>/<name>.py``, an ``evaluate.Metric`` subclass) and is loaded by path::

    from kadapt.metrics import load_metric
    squad = load_metric("squad_em_f1")
    squad.compute(predictions=[...], references=[...])

Metric module files import ``datasets`` and ``evaluate`` on separate lines (evaluate's import
scanner does not understand ``import a, b``). Each metric folder also has an empty ``__init__.py``
so that it ships as package data in a regular (non-editable) install.
"""
from __future__ import annotations

from pathlib import Path

from kadapt.core.errors import KadaptError

METRICS_DIR = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """Names of the metric modules shipped in the package."""
    return sorted(p.name for p in METRICS_DIR.iterdir()
                  if p.is_dir() and (p / f"{p.name}.py").is_file())


def load_metric(name: str, **kwargs):
    """Load a packaged metric as an ``evaluate`` module (no network access)."""
    if name not in available_metrics():
        raise KadaptError(f"unknown metric {name!r}; packaged metrics: {available_metrics()}")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), **kwargs)
