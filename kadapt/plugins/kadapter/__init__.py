"""K-Adapter (Wang et al., 2021): factual and linguistic adapters read from backbone layers.

The factual adapter's objective (relation classification) is a family-agnostic head in
``kadapt/tasks``; the linguistic adapter's (dependency head prediction) lives here, and so do the
import / export of the reference repository's checkpoints (``kadapt import|export kadapter``).
"""
from kadapt.core.family import Family, register_family
from kadapt.plugins.kadapter.cli import add_commands
from kadapt.plugins.kadapter.dependency_head import DependencyHeadPrediction
from kadapt.plugins.kadapter.plugin import KAdapter, KAdapterConfig

__all__ = ["DependencyHeadPrediction", "KAdapter", "KAdapterConfig"]

register_family(Family(
    kind="kadapter", plugin=KAdapter, objectives=(DependencyHeadPrediction,), commands=(add_commands,),
    description="K-Adapter: outside adapter layers reading backbone hidden states (0/11/23 on a 24-layer backbone)",
))
