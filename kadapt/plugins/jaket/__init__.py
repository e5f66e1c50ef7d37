"""JAKET (Yu et al., AAAI 2022): entity context memory + composition GAT + LM2 re-entry.

The folder holds the plug-in, the entity memory, the GAT, the pre-training objective and pipeline,
the KG context read at fine-tuning time, its downstream KG tasks (KGQA, KG entity classification)
with their data formats, and the ``kadapt kg-memory`` command.
"""
from kadapt.core.family import Family, register_family
from kadapt.plugins.jaket.cli import add_commands, add_kg_commands
from kadapt.plugins.jaket.infusion import JAKET_PIPELINE
from kadapt.plugins.jaket.kg_entity_classification import KGEntityClassification, read_kg_entities
from kadapt.plugins.jaket.kgqa import KGQA, read_metaqa_questions
from kadapt.plugins.jaket.memory import EntityMemory, encode_descriptions, refresh_interval
from kadapt.plugins.jaket.plugin import JaketConfig, JaketPlugin
from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective
from kadapt.plugins.jaket.text_linking import prepare_text_run

JaketPlugin.run_preparer = staticmethod(prepare_text_run)  # plugin_options.jaket of fine-tuning recipes

__all__ = ["EntityMemory", "JaketConfig", "JaketPlugin", "JaketPretrainingObjective", "encode_descriptions",
           "refresh_interval"]

register_family(Family(
    kind="jaket", plugin=JaketPlugin, objectives=(JaketPretrainingObjective, KGQA, KGEntityClassification),
    formats={"kg_entities": read_kg_entities, "metaqa": read_metaqa_questions}, commands=(add_commands, add_kg_commands),
    pipeline=JAKET_PIPELINE,
    description="JAKET: composition GAT over an LM1 entity memory, merged at mentions, then LM2",
))
