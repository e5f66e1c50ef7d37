"""``kadapt infuse`` for JAKET: read the KG, build (or load) the entity memory, pre-train, save.

Recipe: ``plugin.kind: jaket``; ``data.format: kg`` with ``data.train`` = the KG folder (its triples
are the examples; ``data.dev_fraction`` carves a dev set); ``objective.name: jaket_pretraining`` with
optional ``memory: PATH`` (a ``memory.safetensors`` from ``kadapt kg-memory``; otherwise LM1 encodes
the descriptions at the start of the run). The plug-in folder gets ``memory.safetensors`` beside it.
"""
from __future__ import annotations

import logging

import torch

from kadapt.core.fileio import load_tensors
from kadapt.runs.infuse import InfusionResult
from kadapt.kg import read_kg
from kadapt.store.plugin_dir import save_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.jaket.memory import EntityMemory
from kadapt.plugins.jaket.objectives import JaketObjectives
from kadapt.plugins.jaket.pretraining import JaketPretrainingModel, build_memory
from kadapt.runs.recipe import Recipe, resolve_path
from kadapt.runs.context import encode_records, start_run
from kadapt.runs.loop import train

log = logging.getLogger(__name__)


def infuse_jaket(recipe: Recipe, *, out=None, resume: bool = False, backbone=None) -> InfusionResult:
    run = start_run(recipe, out, backbone)
    backbone, policy, splits = run.backbone, run.policy, run.splits
    graph = read_kg(resolve_path(recipe.data.train), policy=recipe.data.on_error)
    torch.manual_seed(recipe.training.seed)
    plugin = build_plugin("jaket", {"name": recipe.name, **recipe.plugin.config}, backbone.spec,
                          source=f"{recipe.source}: plugin.config")
    config = dict(recipe.objective.config)
    memory_path = config.pop("memory", None)
    if memory_path:
        tensors, _ = load_tensors(resolve_path(memory_path))
        memory = EntityMemory.from_tensors(tensors, momentum=plugin.config.memory_momentum,
                                           schedule=tuple(plugin.config.refresh_schedule), source=str(memory_path))
    else:
        log.info("encoding %d entity descriptions with LM1 (layers 1-%d)", graph.num_entities, plugin.lm1_layer)
        memory = build_memory(backbone, graph, plugin)
    labels = graph.category_labels()
    head = JaketObjectives(backbone.spec.hidden_size, num_categories=len(labels), num_relations=graph.num_relations,
                           names={"entities": graph.entity_names, "relations": graph.relation_names}, **config)
    model = JaketPretrainingModel(backbone, plugin, head, graph, memory, seed=recipe.training.seed,
                                  category_labels=labels)
    tok, max_len = backbone.tokenizer, recipe.data.max_length
    train_set, _ = encode_records(head, splits.train, tok, max_len, policy, "train")
    dev_set, _ = encode_records(head, splits.dev, tok, max_len, policy, "dev")
    log.info("infusing %s (jaket, %d parameters) on %d train / %d dev triples of %s", recipe.name,
             plugin.num_parameters(), len(train_set), len(dev_set), graph.source)
    result = train(model, train_set, dev_set, recipe.training, run.run_dir, pad_id=tok.pad_token_id,
                   resume=resume, accelerator=run.accelerator)
    plugin_dir, zoo_entry = run.run_dir / "plugin", None
    if run.accelerator.is_main_process:
        metrics = {k: round(v, 4) for k, v in result.final_dev.items() if isinstance(v, float)}
        save_plugin(
            plugin, plugin_dir, backbone.fingerprint,
            objectives=[{"name": head.name, "config": {**head.config_dict(), "category_labels": labels},
                         "dev_metrics": metrics}],
            heads={f"{head.name}.{k}": v for k, v in head.state_dict().items()},
            memory=memory.to_tensors(),
            card={"summary": f"{recipe.name}: a JAKET knowledge module infused on {graph.source} by kadapt.",
                  "data": f"KG {graph.source}: {graph.num_entities} entities, {graph.num_relations} relations, "
                          f"{graph.num_triples} triples", "metrics": metrics},
        )
        if recipe.output.zoo:
            from kadapt.store.zoo import Zoo

            zoo_entry = Zoo(recipe.output.zoo).add(plugin_dir, recipe.name)
    run.accelerator.wait_for_everyone()
    return InfusionResult(plugin_dir, run.run_dir, result, zoo_entry)
