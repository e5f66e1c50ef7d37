"""TRELM: knowledge routing as a sparse mask adapter on the FFN neurons, with a memory bank."""
from kadapt.plugins.trelm import objective  # noqa: F401  (registers "trelm_knowledge")
from kadapt.plugins.trelm.plugin import TRELMConfig, TRELMPlugin

__all__ = ["TRELMConfig", "TRELMPlugin"]
