"""TRELM: knowledge routing as a sparse mask adapter on the FFN neurons, with a memory bank."""
from kadapt.plugins.trelm.model import TRELMConfig, TRELMPlugin

__all__ = ["TRELMConfig", "TRELMPlugin"]
