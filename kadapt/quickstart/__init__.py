"""Quickstart: a synthetic knowledge world for the ``kadapt quickstart`` demo (no download).

``from kadapt.quickstart import generate_world, WorldConfig`` (see :mod:`.world`). Names are
resolved lazily so that ``python -m kadapt.quickstart.world`` runs without a double import.
"""
from __future__ import annotations

__all__ = ["FACT_LABELS", "SYNTAX_LABELS", "WorldConfig", "WorldFiles", "generate_world"]


def __getattr__(name: str):
    if name in __all__:
        from kadapt.quickstart import world

        return getattr(world, name)
    raise AttributeError(f"module 'kadapt.quickstart' has no attribute {name!r}")
