"""Knowledge infusion: train one plug-in + its objective head over the frozen backbone, then save it.

Continual infusion: the run writes only its own run folder and (optionally) a NEW zoo entry; the
backbone and every existing plug-in are never opened for writing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective
from kadapt.store.plugin_dir import save_plugin
from kadapt.core.family import build_plugin
from kadapt.runs.recipe import Recipe
from kadapt.runs.context import encode_records, objective_config_with_labels, start_run
from kadapt.runs.loop import TrainResult, train

log = logging.getLogger(__name__)

#: plug-in kinds whose infusion is not "plug-in + objective head over one backbone pass" (re-entrant or
#: inside plug-ins) name their own pipeline here as "module:function" (imported on use).
INFUSION_PIPELINES: dict[str, str] = {
    "jaket": "kadapt.plugins.jaket.infusion:infuse_jaket",
}


@dataclass
class InfusionResult:
    plugin_dir: Path
    run_dir: Path
    train: TrainResult
    zoo_entry: Path | None


def infuse(recipe: Recipe, *, out: str | Path | None = None, resume: bool = False,
           backbone=None) -> InfusionResult:
    """Run an ``infuse`` recipe end to end; returns where the plug-in was written."""
    if recipe.output.zoo:  # fail before training, not after it, on a bad or taken zoo name
        from kadapt.store.zoo import Zoo

        Zoo(recipe.output.zoo).require_new(recipe.name)
    if recipe.plugin.kind in INFUSION_PIPELINES:
        import importlib

        module, function = INFUSION_PIPELINES[recipe.plugin.kind].split(":")
        return getattr(importlib.import_module(module), function)(recipe, out=out, resume=resume, backbone=backbone)
    run = start_run(recipe, out, backbone)
    accelerator, run_dir, backbone, policy, splits = run.accelerator, run.run_dir, run.backbone, run.policy, run.splits

    torch.manual_seed(recipe.training.seed)
    plugin = build_plugin(recipe.plugin.kind, {"name": recipe.name, **recipe.plugin.config}, backbone.spec,
                          source=f"{recipe.source}: plugin.config")
    model = KnowledgeModel(backbone, [plugin])
    objective_config = objective_config_with_labels(recipe.objective.name, recipe.objective.config, splits.train)
    model.head = build_objective(recipe.objective.name, model.feature_size, objective_config,
                                 source=f"{recipe.source}: objective")
    if hasattr(model.head, "bind_backbone"):  # heads tied to the backbone's embeddings (TRELM MLM)
        model.head.bind_backbone(backbone)
    tok, max_len = backbone.tokenizer, recipe.data.max_length
    train_set, _ = encode_records(model.head, splits.train, tok, max_len, policy, "train")
    dev_set, _ = encode_records(model.head, splits.dev, tok, max_len, policy, "dev")
    log.info("infusing %s (%s, %d parameters) on %d train / %d dev examples", recipe.name, plugin.kind,
             plugin.num_parameters(), len(train_set), len(dev_set))

    collates = {}
    if recipe.training.cache:
        train_set, dev_set, collates = cache_splits(model, recipe, train_set, dev_set, accelerator)
    result = train(model, train_set, dev_set, recipe.training, run_dir, pad_id=tok.pad_token_id,
                   resume=resume, accelerator=accelerator, **collates)
    plugin_dir = run_dir / "plugin"
    zoo_entry = None
    if accelerator.is_main_process:
        plugin_dir = _save(model, plugin_dir, recipe, result, backbone)
        if recipe.output.zoo:
            from kadapt.store.zoo import Zoo

            zoo_entry = Zoo(recipe.output.zoo).add(plugin_dir, recipe.name)
    accelerator.wait_for_everyone()
    return InfusionResult(plugin_dir, run_dir, result, zoo_entry)


def cache_splits(model: KnowledgeModel, recipe: Recipe, train_set: list, dev_set: list,
                 accelerator=None) -> tuple[list, list, dict]:
    """Train/dev examples read from the hidden-state cache, and the collates for ``train``."""
    from kadapt.store.hidden_cache import cached_split
    from kadapt.core.errors import KadaptError
    from kadapt.runs.recipe import resolve_path

    for plugin in model.plugins:
        if plugin.placement != "outside":
            raise KadaptError(f"{recipe.source}: training.cache serves outside plug-ins only; {plugin.kind!r} "
                              f"attaches {plugin.placement!r} (its backbone states depend on its weights)")
    data, pad_id, layers = recipe.data, model.backbone.tokenizer.pad_token_id, model.required_layers()
    files = [resolve_path(data.train)]
    train_set, train_collate = cached_split(model.backbone, layers, train_set, files, data.max_length,
                                            recipe.training, pad_id, f"{recipe.name} train", accelerator)
    collates = {"collate_fn": train_collate}
    if dev_set:
        dev_files = [resolve_path(data.dev) if data.dev else resolve_path(data.train)]
        dev_set, collates["dev_collate_fn"] = cached_split(model.backbone, layers, dev_set, dev_files, data.max_length,
                                                           recipe.training, pad_id, f"{recipe.name} dev", accelerator)
    return train_set, dev_set, collates


def _memory_tensors(plugin, head_name: str, head_memory: dict) -> dict | None:
    """memory.safetensors content: the plug-in's own memory (TRELM's bank) and the objective's
    (XLM-K's candidate queues, keys prefixed with the objective name)."""
    memory = dict(plugin.memory_tensors()) if hasattr(plugin, "memory_tensors") else {}
    memory.update({f"{head_name}.{k}": v for k, v in head_memory.items()})
    return memory or None


def _save(model: KnowledgeModel, plugin_dir: Path, recipe: Recipe, result: TrainResult, backbone) -> Path:
    plugin = model.plugins[0]
    head = model.head
    metrics = {k: round(v, 4) for k, v in result.final_dev.items() if isinstance(v, float)}
    # objectives with a memory (XLM-K candidate queues) save it to memory.safetensors, not to the heads
    memory = head.memory_state() if hasattr(head, "memory_state") else {}
    return save_plugin(
        plugin, plugin_dir, backbone.fingerprint,
        objectives=[{"name": head.name, "config": head.config_dict(), "dev_metrics": metrics}],
        heads={f"{head.name}.{k}": v for k, v in head.state_dict().items() if k not in memory},
        memory=_memory_tensors(plugin, head.name, memory),
        card={
            "summary": f"{recipe.name}: a {plugin.kind} plug-in infused with `{head.name}` by kadapt.",
            "data": f"{recipe.data.format}: train={recipe.data.train} dev={recipe.data.dev}",
            "metrics": metrics,
        },
    )
