"""Downstream fine-tuning over ``[backbone_last ; plug-ins]`` and evaluation of a fine-tuned run.

Plug-ins are loaded strictly (fingerprint checked) and frozen; only the task head trains. The run
folder gets ``head.safetensors`` + ``head_config.json`` (task, head config, plug-in folders, backbone
fingerprint), ``metrics.json`` (dev and test) and ``predictions.jsonl`` (test).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.compose import KnowledgeModel
from kadapt.data.policy import ErrorPolicy
from kadapt.data.readers import read_records
from kadapt.fileio import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors
from kadapt.objectives import build_objective
from kadapt.plugin_io import load_plugin
from kadapt.recipes import Recipe, resolve_path
from kadapt.runs import encode_records, load_backbone, objective_config_with_labels, start_run
from kadapt.training import evaluate_model, train

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    run_dir: Path
    metrics: dict


def build_model(backbone, plugin_dirs: list[str | Path]) -> KnowledgeModel:
    plugins = []
    for directory in plugin_dirs:
        plugin = load_plugin(resolve_path(str(directory)), backbone).plugin
        plugin.requires_grad_(False)
        plugins.append(plugin)
    return KnowledgeModel(backbone, plugins)


def finetune(recipe: Recipe, *, plugins: list[str] | None = None, out: str | Path | None = None,
             resume: bool = False, backbone=None) -> FinetuneResult:
    """Run a ``finetune`` recipe; ``plugins`` (e.g. from ``--plugins``) replaces the recipe's list."""
    if plugins is not None:
        recipe.plugins = list(plugins)
    run = start_run(recipe, out, backbone)
    accelerator, run_dir, backbone, policy, splits = run.accelerator, run.run_dir, run.backbone, run.policy, run.splits
    model = build_model(backbone, recipe.plugins)
    config = objective_config_with_labels(recipe.objective.name, recipe.objective.config, splits.train)
    torch.manual_seed(recipe.training.seed)  # the head's init is part of the seeded run (as in infuse)
    model.head = build_objective(recipe.objective.name, model.feature_size, config, source=f"{recipe.source}: objective")
    tok, max_len = backbone.tokenizer, recipe.data.max_length
    encoded, kept = {}, {}
    for name in ("train", "dev", "test"):
        records = model.head.prepare_records(getattr(splits, name), name, recipe.training.seed)
        encoded[name], kept[name] = encode_records(model.head, records, tok, max_len, policy, name)
    result = train(model, encoded["train"], encoded["dev"], recipe.training, run_dir,
                   pad_id=tok.pad_token_id, resume=resume, accelerator=accelerator)
    metrics = {"dev": result.final_dev, "train_seconds": round(result.seconds, 2), "steps": result.global_step,
               "plugins": [str(p) for p in recipe.plugins], "skipped_records": policy.summary()}
    if accelerator.is_main_process:
        if encoded["test"]:
            test_metrics, predictions = evaluate_model(model, encoded["test"], recipe.training.batch_size,
                                                       tok.pad_token_id, accelerator.device, with_predictions=True)
            metrics["test"] = test_metrics
            write_predictions(run_dir / "predictions.jsonl", kept["test"], predictions)
        save_head(run_dir, model, recipe)
        atomic_write_json(run_dir / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return FinetuneResult(run_dir, metrics)


def write_predictions(path: Path, records: list, predictions: list) -> None:
    lines = [json.dumps({"source": getattr(r, "source", ""), "gold": _gold(r), "prediction": p})
             for r, p in zip(records, predictions)]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _gold(record):
    """The record's gold answer for predictions.jsonl (``label``, or a label set as a list)."""
    if hasattr(record, "label"):
        return record.label
    labels = getattr(record, "labels", None)
    return list(labels) if isinstance(labels, (tuple, list)) else labels


def save_head(run_dir: Path, model: KnowledgeModel, recipe: Recipe) -> None:
    save_tensors(run_dir / "head.safetensors", model.head.state_dict(), {"objective": model.head.name})
    atomic_write_json(run_dir / "head_config.json", {
        "objective": model.head.name,
        "config": model.head.config_dict(),
        "plugins": [str(p) for p in recipe.plugins],
        "backbone": recipe.backbone.name_or_path,
        "backbone_fingerprint": model.backbone.fingerprint.to_dict(),
        "data_format": recipe.data.format,
        "max_length": recipe.data.max_length,
        "seed": recipe.training.seed,
    })


def load_finetuned(run_dir: str | Path, backbone=None) -> KnowledgeModel:
    """Rebuild a fine-tuned model (backbone, frozen plug-ins, trained head) from its run folder."""
    from kadapt.backbone import Fingerprint
    from kadapt.recipes import BackboneSection

    run_dir = Path(run_dir)
    info = read_json(run_dir / "head_config.json", "fine-tuned head config")
    backbone = backbone or load_backbone(BackboneSection(name_or_path=info["backbone"]))
    Fingerprint.from_dict(info["backbone_fingerprint"]).check_matches(backbone.fingerprint, str(run_dir / "head_config.json"))
    model = build_model(backbone, info["plugins"])
    model.head = build_objective(info["objective"], model.feature_size, info["config"])
    weights, _ = load_tensors(run_dir / "head.safetensors")
    model.head.load_state_dict(weights, strict=True)
    model.eval()
    return model


def evaluate_run(run_dir: str | Path, data: str | Path, fmt: str | None = None, *, on_error: str = "raise",
                 batch_size: int = 64, out: str | Path | None = None) -> dict:
    """Evaluate a fine-tuned run on a data file; writes metrics + predictions beside it."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / "head_config.json", "fine-tuned head config")
    model = load_finetuned(run_dir)
    policy = ErrorPolicy(on_error)
    records = read_records(fmt or info["data_format"], resolve_path(str(data)), policy)
    records = model.head.prepare_records(records, "test", info.get("seed", 0))
    tok = model.backbone.tokenizer
    encoded, kept = encode_records(model.head, records, tok, info["max_length"], policy, str(data))
    metrics, predictions = evaluate_model(model, encoded, batch_size, tok.pad_token_id,
                                          model.backbone.device, with_predictions=True)
    out_dir = Path(out) if out else run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.jsonl", kept, predictions)
    result = {"data": str(data), "examples": len(encoded), "skipped_records": policy.summary(), **metrics}
    atomic_write_json(out_dir / "metrics.json", result)
    return result
