"""TRELM: knowledge routing as a sparse mask adapter on the FFN neurons, with a memory bank.

The folder holds the plug-in (sparse FFN delta, integrated-gradient attribution, memory bank) and its
objective (contrastive knowledge assessing + MLM), and ``kadapt export merged`` (the delta merged into a
plain ``transformers`` model).
"""
from kadapt.core.family import Family, register_family
from kadapt.plugins.trelm.cli import add_commands
from kadapt.plugins.trelm.objective import TRELMKnowledgeObjective
from kadapt.plugins.trelm.plugin import TRELMConfig, TRELMPlugin

__all__ = ["TRELMConfig", "TRELMKnowledgeObjective", "TRELMPlugin"]

register_family(Family(
    kind="trelm", plugin=TRELMPlugin, objectives=(TRELMKnowledgeObjective,), commands=(add_commands,),
    description="TRELM: trainable sparse delta on attributed FFN neurons, run in the plug-in's own pass",
))
