"""Knowledge infusion: train one plug-in over the frozen backbone, then save it.

``infuse(recipe)`` is the one driver for every family: it asks the family's
:class:`~kadapt.core.family.InfusionPipeline` for the model to train (the standard pipeline below:
plug-in + objective head in a :class:`~kadapt.core.model.KnowledgeModel`; JAKET brings its own),
trains it with the one training loop (:func:`kadapt.runs.loop.train`) and writes the plug-in folder.

Continual infusion: the run writes only its own run folder and (optionally) a NEW zoo entry; the
backbone and every existing plug-in are never opened for writing.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.core.errors import KadaptError
from kadapt.core.family import InfusionPipeline, build_plugin, family
from kadapt.core.model import KnowledgeModel
from kadapt.core.paths import resolve_path
from kadapt.runs.context import build_head, encode_records, start_run
from kadapt.runs.loop import TrainResult, train
from kadapt.data.formats import format_note
from kadapt.runs.recipe import Recipe, split_values
from kadapt.store.plugin_dir import save_plugin

log = logging.getLogger(__name__)


@dataclass
class InfusionResult:
    plugin_dir: Path
    run_dir: Path
    train: TrainResult
    zoo_entry: Path | None


class StandardPipeline(InfusionPipeline):
    """Plug-in + the recipe's objective head over one backbone pass (K-Adapter, XLM-K, TRELM)."""

    def build(self, recipe: Recipe, backbone, splits) -> KnowledgeModel:
        torch.manual_seed(recipe.training.seed)
        plugin = build_plugin(recipe.plugin.kind, {"name": recipe.name, **recipe.plugin.config},
                              backbone.spec, source=f"{recipe.source}: plugin.config")
        model = KnowledgeModel(backbone, [plugin])
        build_head(model, recipe.objective, splits.train, recipe.source)
        return model

    def plugin_files(self, model: KnowledgeModel, recipe: Recipe, dev_metrics: dict) -> dict:
        plugin, head = model.plugins[0], model.head
        head_memory = head.extra_tensors()  # XLM-K's candidate queues: memory.safetensors, not the heads
        memory = {**plugin.extra_tensors(), **{f"{head.name}.{k}": v for k, v in head_memory.items()}}
        return {
            "objectives": [{"name": head.name, "config": head.config_dict(), "dev_metrics": dev_metrics}],
            "heads": {f"{head.name}.{k}": v for k, v in head.state_dict().items() if k not in head_memory},
            "memory": memory or None,
            "card": {"summary": f"{recipe.name}: a {plugin.kind} plug-in infused with `{head.name}` by kadapt.",
                     "data": f"{recipe.data.format}: train={recipe.data.train} dev={recipe.data.dev}"
                             + (f" ({note})" if (note := format_note(recipe.data.format)) else ""),
                     "metrics": dev_metrics},
        }


STANDARD_PIPELINE = StandardPipeline()


def pipeline_for(kind: str) -> InfusionPipeline:
    return family(kind).pipeline or STANDARD_PIPELINE


def reserve_zoo_name(recipe: Recipe) -> None:
    """Fail before training, not after it, on a bad or taken zoo name; hold the name (main process)."""
    if recipe.output.zoo:
        from kadapt.store.zoo import Zoo

        zoo = Zoo(recipe.output.zoo)
        zoo.reserve(recipe.name) if int(os.environ.get("RANK", "0")) == 0 else zoo.require_new(recipe.name)


def infuse(recipe: Recipe, *, out: str | Path | None = None, resume: bool = False,
           backbone=None, overwrite: bool = False) -> InfusionResult:
    """Run an ``infuse`` recipe end to end; returns where the plug-in was written.

    An ``out`` folder that already holds a run needs ``resume`` (continue) or ``overwrite`` (replace).
    """
    reserve_zoo_name(recipe)
    pipeline = pipeline_for(recipe.plugin.kind)
    run = start_run(recipe, out, backbone, resume=resume, overwrite=overwrite)
    model = pipeline.build(recipe, run.backbone, run.splits)
    tok, max_len = run.backbone.tokenizer, recipe.data.max_length
    train_set, _ = encode_records(model.head, run.splits.train, tok, max_len, run.policy, "train")
    dev_set, _ = encode_records(model.head, run.splits.dev, tok, max_len, run.policy, "dev")
    plugin = model.plugins[0]
    log.info("infusing %s (%s, %d parameters) on %d train / %d dev examples", recipe.name, plugin.kind,
             plugin.num_parameters(), len(train_set), len(dev_set))
    collates = {}
    if recipe.training.cache:
        train_set, dev_set, collates = cache_splits(model, recipe, train_set, dev_set, run.accelerator)
    result = train(model, train_set, dev_set, recipe.training, run.run_dir, pad_id=tok.pad_token_id,
                   resume=resume, accelerator=run.accelerator, **collates)
    plugin_dir, zoo_entry = run.run_dir / "plugin", None
    if run.accelerator.is_main_process:
        plugin_dir, zoo_entry = save_infused(model, pipeline, recipe, result, plugin_dir, overwrite=resume or overwrite)
    run.accelerator.wait_for_everyone()
    return InfusionResult(plugin_dir, run.run_dir, result, zoo_entry)


def save_infused(model, pipeline: InfusionPipeline, recipe: Recipe, result: TrainResult,
                 plugin_dir: Path, *, overwrite: bool = False) -> tuple[Path, Path | None]:
    """Write the trained plug-in folder (and its zoo entry when the recipe names a zoo)."""
    metrics = {k: round(v, 4) for k, v in result.final_dev.items() if isinstance(v, float)}
    files = pipeline.plugin_files(model, recipe, metrics)
    plugin_dir = save_plugin(model.plugins[0], plugin_dir, model.backbone.fingerprint, overwrite=overwrite, **files)
    zoo_entry = None
    if recipe.output.zoo:
        from kadapt.store.zoo import Zoo

        zoo_entry = Zoo(recipe.output.zoo).add(plugin_dir, recipe.name)
    return plugin_dir, zoo_entry


def cache_splits(model: KnowledgeModel, recipe: Recipe, train_set: list, dev_set: list,
                 accelerator=None) -> tuple[list, list, dict]:
    """Train/dev examples read from the hidden-state cache, and the collates for ``train``."""
    from kadapt.store.distributed_cache import cached_split

    for plugin in model.plugins:
        if not plugin.reads_shared_states_only:
            raise KadaptError(f"{recipe.source}: training.cache serves plug-ins that read only the shared "
                              f"backbone states; {plugin.kind!r} (attaches {plugin.placement!r}) computes "
                              "states that depend on its weights")
    data, pad_id, layers = recipe.data, model.backbone.tokenizer.pad_token_id, model.required_layers()
    files = [resolve_path(data.train)]
    train_set, train_collate = cached_split(model.backbone, layers, train_set, files, data.max_length,
                                            recipe.training, pad_id, f"{recipe.name} train", accelerator)
    collates = {"collate_fn": train_collate}
    if dev_set:
        dev_files = [resolve_path(v) for v in split_values(data, "dev")] or [resolve_path(data.train)]
        dev_set, collates["dev_collate_fn"] = cached_split(model.backbone, layers, dev_set, dev_files, data.max_length,
                                                           recipe.training, pad_id, f"{recipe.name} dev", accelerator)
    return train_set, dev_set, collates
