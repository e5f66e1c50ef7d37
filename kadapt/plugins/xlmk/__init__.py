"""XLM-K (Jiang et al., 2022): a contrastive entity adapter over a frozen multilingual encoder.

The folder holds the plug-in, its objective (masked entity prediction + object entailment with
InfoNCE and candidate queues), its retrieval evaluation, its knowledge data format and converters
(mParaRel, LAMA T-REx, DBP15K) and the ``kadapt xlmk-convert`` command.
"""
from kadapt.core.family import Family, register_family
from kadapt.plugins.xlmk.cli import add_commands
from kadapt.plugins.xlmk.converters import read_knowledge_source
from kadapt.plugins.xlmk.objective import XLMKObjective
from kadapt.plugins.xlmk.plugin import XLMKConfig, XLMKPlugin

__all__ = ["XLMKConfig", "XLMKObjective", "XLMKPlugin"]

register_family(Family(
    kind="xlmk", plugin=XLMKPlugin, objectives=(XLMKObjective,),
    formats={"xlmk_knowledge": read_knowledge_source}, commands=(add_commands,),
    description="XLM-K: contrastive entity adapter (masked entity prediction + object entailment)",
))
