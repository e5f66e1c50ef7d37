"""JAKET's infusion pipeline: read the KG, build (or load) the entity memory, pre-train, save.

Recipe: ``plugin.kind: jaket``; ``data.format: kg`` with ``data.train`` = the KG folder (its triples
are the examples; ``data.dev_fraction`` carves a dev set); ``objective.name: jaket_pretraining`` with
optional ``memory: PATH`` (a ``memory.safetensors`` from ``kadapt kg-memory``; otherwise LM1 encodes
the descriptions at the start of the run). The plug-in folder gets ``memory.safetensors`` beside it.
Linked text (the paper's setting): ``data.format: lama_trex`` (or any reader of sentences with
subject/object ids) and ``objective.config.kg: KG_DIR``; ``mlm_weight`` adds the MLM term.
``kadapt infuse`` runs it through the one infusion driver and training loop (:mod:`kadapt.runs.infuse`).
"""
from __future__ import annotations

import logging

import torch

from kadapt.core.family import InfusionPipeline, build_plugin
from kadapt.core.fileio import load_tensors
from kadapt.core.paths import resolve_path
from kadapt.data.records import RelationExample
from kadapt.kg import read_kg
from kadapt.plugins.jaket.memory import EntityMemory
from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective
from kadapt.plugins.jaket.pretraining import JaketPretrainingModel, build_memory

log = logging.getLogger(__name__)


class JaketPipeline(InfusionPipeline):
    def build(self, recipe, backbone, splits) -> JaketPretrainingModel:
        config = dict(recipe.objective.config)
        kg_dir = config.pop("kg", None)  # linked text: the KG its ids point into (data.train is then text)
        graph = read_kg(resolve_path(kg_dir or recipe.data.train), policy=recipe.data.on_error)
        if kg_dir:
            for name in ("train", "dev"):
                setattr(splits, name, linked_records(getattr(splits, name), graph, name))
        torch.manual_seed(recipe.training.seed)
        plugin = build_plugin("jaket", {"name": recipe.name, **recipe.plugin.config}, backbone.spec,
                              source=f"{recipe.source}: plugin.config")
        backbone.require(plugin.backbone_needs, f"{recipe.source}: jaket plug-in {plugin.config.name!r}")  # before memory
        memory_path = config.pop("memory", None)
        if memory_path:
            tensors, _ = load_tensors(resolve_path(memory_path))
            memory = EntityMemory.from_tensors(tensors, momentum=plugin.config.memory_momentum,
                                               schedule=tuple(plugin.config.refresh_schedule), source=str(memory_path))
        else:
            log.info("encoding %d entity descriptions with LM1 (layers 1-%d)", graph.num_entities, plugin.lm1_layer)
            memory = build_memory(backbone, graph, plugin)
        labels = graph.category_labels()
        head = JaketPretrainingObjective(backbone.spec.hidden_size, num_categories=len(labels),
                                         num_relations=graph.num_relations,
                                         names={"entities": graph.entity_names, "relations": graph.relation_names,
                                                "entity_index": {e: i for i, e in enumerate(graph.entity_ids)},
                                                "relation_index": {r: i for i, r in enumerate(graph.relation_ids)}},
                                         vocab_size=backbone.model.get_input_embeddings().weight.shape[0], **config)
        log.info("JAKET pre-training on the %d triples of %s", graph.num_triples, graph.source)
        return JaketPretrainingModel(backbone, plugin, head, graph, memory, seed=recipe.training.seed,
                                     category_labels=labels)

    def plugin_files(self, model: JaketPretrainingModel, recipe, dev_metrics: dict) -> dict:
        head, graph = model.head, model.graph
        return {
            "objectives": [{"name": head.name, "config": {**head.config_dict(), "category_labels": model.category_labels},
                            "dev_metrics": dev_metrics}],
            "heads": {f"{head.name}.{k}": v for k, v in head.state_dict().items()},
            "memory": model.memory.to_tensors(),
            "card": {"summary": f"{recipe.name}: a JAKET knowledge module infused on {graph.source} by kadapt.",
                     "data": f"KG {graph.source}: {graph.num_entities} entities, {graph.num_relations} relations, "
                             f"{graph.num_triples} triples", "metrics": dev_metrics},
        }


def linked_records(records: list, graph, split: str) -> list:
    """The linked sentences whose fact (subject, relation, object) is a triple of the KG -- so sentences
    of held-out facts never reach pre-training; the rest are counted and logged in one line (an id
    unknown to the KG is never an error)."""
    entities, relations = set(graph.entity_ids), set(graph.relation_ids)
    facts = {(graph.entity_ids[h], graph.relation_ids[r], graph.entity_ids[t]) for h, r, t in graph.triples.tolist()}
    kept, dropped = [], {"unknown_entity": 0, "unknown_relation": 0, "fact_not_in_kg": 0, "not_linked_text": 0}
    for r in records:
        if not isinstance(r, RelationExample):
            dropped["not_linked_text"] += 1
        elif r.subj_id not in entities or r.obj_id not in entities:
            dropped["unknown_entity"] += 1
        elif r.label not in relations:
            dropped["unknown_relation"] += 1
        elif (r.subj_id, r.label, r.obj_id) not in facts:  # e.g. a held-out fact of `kadapt kg build`
            dropped["fact_not_in_kg"] += 1
        else:
            kept.append(r)
    if any(dropped.values()):
        log.warning("JAKET linked text, %s: kept %d of %d sentences; dropped %s", split, len(kept), len(records),
                    ", ".join(f"{k} {v}" for k, v in dropped.items() if v))
    return kept


JAKET_PIPELINE = JaketPipeline()
