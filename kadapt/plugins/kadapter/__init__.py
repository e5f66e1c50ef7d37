"""K-Adapter (Wang et al., 2021): factual and linguistic adapters read from backbone layers."""
from kadapt.plugins.kadapter import dependency_head  # noqa: F401  (registers "dependency_head")
from kadapt.plugins.kadapter.plugin import KAdapter, KAdapterConfig

__all__ = ["KAdapter", "KAdapterConfig"]
