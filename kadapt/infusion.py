"""Knowledge infusion: train one plug-in + its objective head over the frozen backbone, then save it.

Continual infusion: the run writes only its own run folder and (optionally) a NEW zoo entry; the
backbone and every existing plug-in are never opened for writing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.compose import KnowledgeModel
from kadapt.objectives import build_objective
from kadapt.plugin_io import save_plugin
from kadapt.plugins import build_plugin
from kadapt.recipes import Recipe
from kadapt.runs import encode_records, objective_config_with_labels, start_run
from kadapt.training import TrainResult, train

log = logging.getLogger(__name__)


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
        from kadapt.zoo import Zoo

        Zoo(recipe.output.zoo).require_new(recipe.name)
    run = start_run(recipe, out, backbone)
    accelerator, run_dir, backbone, policy, splits = run.accelerator, run.run_dir, run.backbone, run.policy, run.splits

    torch.manual_seed(recipe.training.seed)
    plugin = build_plugin(recipe.plugin.kind, {"name": recipe.name, **recipe.plugin.config}, backbone.spec,
                          source=f"{recipe.source}: plugin.config")
    model = KnowledgeModel(backbone, [plugin])
    objective_config = objective_config_with_labels(recipe.objective.name, recipe.objective.config, splits.train)
    model.head = build_objective(recipe.objective.name, model.feature_size, objective_config,
                                 source=f"{recipe.source}: objective")
    tok, max_len = backbone.tokenizer, recipe.data.max_length
    train_set, _ = encode_records(model.head, splits.train, tok, max_len, policy, "train")
    dev_set, _ = encode_records(model.head, splits.dev, tok, max_len, policy, "dev")
    log.info("infusing %s (%s, %d parameters) on %d train / %d dev examples", recipe.name, plugin.kind,
             plugin.num_parameters(), len(train_set), len(dev_set))

    result = train(model, train_set, dev_set, recipe.training, run_dir, pad_id=tok.pad_token_id,
                   resume=resume, accelerator=accelerator)
    plugin_dir = run_dir / "plugin"
    zoo_entry = None
    if accelerator.is_main_process:
        plugin_dir = _save(model, plugin_dir, recipe, result, backbone)
        if recipe.output.zoo:
            from kadapt.zoo import Zoo

            zoo_entry = Zoo(recipe.output.zoo).add(plugin_dir, recipe.name)
    accelerator.wait_for_everyone()
    return InfusionResult(plugin_dir, run_dir, result, zoo_entry)


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
        memory={f"{head.name}.{k}": v for k, v in memory.items()},
        card={
            "summary": f"{recipe.name}: a {plugin.kind} plug-in infused with `{head.name}` by kadapt.",
            "data": f"{recipe.data.format}: train={recipe.data.train} dev={recipe.data.dev}",
            "metrics": metrics,
        },
    )
