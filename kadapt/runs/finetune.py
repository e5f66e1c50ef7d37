"""Downstream fine-tuning over ``[backbone_last ; plug-ins]`` and evaluation of a fine-tuned run.

Plug-ins are loaded strictly (fingerprint checked). By default they and the backbone are frozen and
only the task head trains; the recipe's ``finetune`` section selects other modes (trainable plug-ins,
full or adapter fine-tuning of the backbone, K-Adapter fusion; see :mod:`kadapt.runs.tuned_model`). The
run folder gets ``head.safetensors`` + ``head_config.json`` (task, head config, plug-in folders, base
backbone fingerprint, mode), the mode's tuned weights, ``metrics.json`` (dev and test) and
``predictions.jsonl`` (test).
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.core.model import KnowledgeModel
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError, RecipeError
from kadapt.core.fileio import atomic_write_json, atomic_write_text, read_json
from kadapt.runs.recipe import FinetuneSection
from kadapt.runs.tuned_model import TunableKnowledgeModel, load_tuned, make_backbone, save_tuned
from kadapt.core.objective import build_objective
from kadapt.store import hub
from kadapt.store.plugin_dir import load_plugin
from kadapt.runs.recipe import Recipe, resolve_path
from kadapt.runs.context import build_head, encode_records, load_backbone, start_run
from kadapt.runs.infuse import cache_splits
from kadapt.runs.loop import evaluate_model, train

log = logging.getLogger(__name__)

#: the run folder's record of how to rebuild the fine-tuned model
RUN_CONFIG_FILE = "head_config.json"


@dataclass
class FinetuneResult:
    run_dir: Path
    metrics: dict


def build_model(backbone, plugin_dirs: list[str | Path], section: FinetuneSection | None = None,
                *, copy_weights: bool = True, base: Path | None = None) -> KnowledgeModel:
    """Backbone (wrapped for a trainable mode) + plug-ins loaded against the BASE fingerprint. A plug-in
    is a folder (relative to ``base`` when it is there: a saved model's own ``plugins/``) or a Hub repo id."""
    section = section or FinetuneSection()
    backbone = make_backbone(backbone, section, copy_weights=copy_weights)
    plugins = []
    for directory in plugin_dirs:
        inside = base / str(directory) if base is not None else None
        folder = inside if inside is not None and inside.is_dir() else hub.local_folder(resolve_path(str(directory)))
        hub.refuse_foreign_folder(folder, str(directory))
        plugin = load_plugin(folder, backbone).plugin
        plugin.requires_grad_(False)
        plugins.append(plugin)
    return TunableKnowledgeModel(backbone, plugins, section=section)


def finetune(recipe: Recipe, *, plugins: list[str] | None = None, out: str | Path | None = None,
             resume: bool = False, backbone=None, overwrite: bool = False) -> FinetuneResult:
    """Run a ``finetune`` recipe; ``plugins`` (e.g. from ``--plugins``) replaces the recipe's list.

    An ``out`` folder that already holds a run needs ``resume`` (continue) or ``overwrite`` (replace).
    With ``training.seeds`` it is one run per seed and the summary (:func:`finetune_seeds`).
    """
    if plugins is not None:
        recipe.plugins = list(plugins)
    if recipe.training.seeds:
        return finetune_seeds(recipe, out=out, resume=resume, backbone=backbone, overwrite=overwrite)
    own_backbone = backbone is None
    run = start_run(recipe, out, backbone, resume=resume, overwrite=overwrite)
    accelerator, run_dir, backbone, policy, splits = run.accelerator, run.run_dir, run.backbone, run.policy, run.splits
    torch.manual_seed(recipe.training.seed)  # head, fusion and task-adapter inits are part of the seeded run
    # a backbone the caller passed in is copied before a trainable mode changes it
    model = build_model(backbone, recipe.plugins, recipe.finetune, copy_weights=not own_backbone)
    model.prepare_run(recipe.plugin_options, recipe.source)  # e.g. the KG a JAKET plug-in links text to
    # the head's init must not depend on what loading the plug-ins drew from the RNG
    torch.manual_seed(recipe.training.seed)
    build_head(model, recipe.objective, splits.train, recipe.source)
    log.info("trainable parameters: %s", model.trainable_counts())
    tok, max_len = backbone.tokenizer, recipe.data.max_length
    encoded, kept = {}, {}
    for name in ("train", "dev", "test"):
        if name == "dev" and splits.dev_parts:
            continue
        records = model.head.prepare_records(getattr(splits, name), name, recipe.training.seed)
        encoded[name], kept[name] = encode_records(model.head, records, tok, max_len, policy, name)
    if splits.dev_parts:  # several dev files: each evaluated on its own, metrics averaged (per_dev reported)
        encoded["dev"] = {part: encode_records(model.head, model.head.prepare_records(records, "dev", recipe.training.seed),
                                               tok, max_len, policy, f"dev {part}")[0]
                          for part, records in splits.dev_parts.items()}
    collates = {}
    if recipe.training.cache:  # backbone states read from the hidden-state cache (frozen backbone only)
        if splits.dev_parts:
            raise RecipeError(f"{recipe.source}: training.cache with several data.dev files is not supported")
        encoded["train"], encoded["dev"], collates = _cached_splits(model, recipe, encoded, accelerator)
    result = train(model, encoded["train"], encoded["dev"], recipe.training, run_dir,
                   pad_id=tok.pad_token_id, resume=resume, accelerator=accelerator, **collates)
    metrics = {"dev": result.final_dev, "train_seconds": round(result.seconds, 2), "steps": result.global_step,
               "plugins": [str(p) for p in recipe.plugins], "skipped_records": policy.summary(),
               "finetune": model.section.to_dict(), "trainable_parameters": model.trainable_counts()}
    linking = model.entity_linking()
    if linking is not None:
        metrics["linking"] = linking.report()
    if encoded["test"]:  # every rank evaluates its share of the test batches (distributed evaluation)
        metrics["test"], predictions = evaluate_model(model, encoded["test"], recipe.training.batch_size,
                                                      tok.pad_token_id, accelerator.device, with_predictions=True,
                                                      distributed=True)
    if accelerator.is_main_process:
        if encoded["test"]:
            write_predictions(run_dir / "predictions.jsonl", kept["test"], predictions)
        save_head(run_dir, model, recipe)
        atomic_write_json(run_dir / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return FinetuneResult(run_dir, metrics)


def finetune_seeds(recipe: Recipe, *, out: str | Path | None = None, resume: bool = False,
                   backbone=None, overwrite: bool = False) -> FinetuneResult:
    """One run per ``training.seeds`` entry in ``OUT/seed-N``, then ``OUT/seeds.json``: every numeric dev
    and test metric as mean, std (sample, n-1; 0 for one seed) and the per-seed values."""
    root = Path(out or resolve_path(recipe.output.dir))
    runs = {}
    for seed in recipe.training.seeds:
        one = copy.deepcopy(recipe)
        one.training.seed, one.training.seeds = seed, []
        runs[seed] = finetune(one, out=root / f"seed-{seed}", resume=resume, backbone=backbone,
                               overwrite=overwrite).metrics
    summary = {"seeds": list(recipe.training.seeds), "runs": {str(k): str(root / f"seed-{k}") for k in runs}}
    for split in ("dev", "test"):
        results = [m[split] for m in runs.values() if isinstance(m.get(split), dict)]
        if len(results) == len(runs):
            summary[split] = seed_statistics(results)
    atomic_write_json(root / "seeds.json", summary)
    return FinetuneResult(root, summary)


def seed_statistics(results: list[dict]) -> dict:
    """``{metric: {mean, std, values}}`` over runs for each numeric metric that every run has."""
    keys = [k for k in results[0] if all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                                         for r in results)]
    stats = {}
    for key in keys:
        values = [float(r[key]) for r in results]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        stats[key] = {"mean": mean, "std": var ** 0.5, "values": values}
    return stats


def _cached_splits(model: TunableKnowledgeModel, recipe: Recipe, encoded: dict, accelerator) -> tuple[list, list, dict]:
    """Train/dev examples tagged with hidden-state cache rows (see :func:`kadapt.runs.infuse.cache_splits`).

    Only valid while the backbone's states cannot change: ``finetune.backbone: frozen``; plug-ins may
    train (they read the states, they do not change them). Grouped inputs (choices, windows, pairs)
    are not cached."""
    if model.section.backbone != "frozen":
        raise RecipeError(f"{recipe.source}: training.cache needs finetune.backbone: frozen "
                          f"(with backbone: {model.section.backbone} its hidden states change while training)")
    first = encoded["train"][0]["input_ids"] if encoded["train"] else []
    if first and isinstance(first[0], (list, tuple)):
        raise RecipeError(f"{recipe.source}: training.cache serves one sequence per example; "
                          f"{recipe.objective.name!r} encodes several (choices, windows or pairs)")
    return cache_splits(model, recipe, encoded["train"], encoded["dev"], accelerator)


def _gold(record):
    """The record's gold answer for the predictions file (label, label set, cloze object, or QA
    answer texts)."""
    if getattr(record, "label", None) is not None:
        return record.label
    if isinstance(getattr(record, "labels", None), (tuple, list)):
        return list(record.labels)
    if getattr(record, "answer", None) is not None:
        return record.answer
    answers = getattr(record, "answers", None)
    return [text for text, _ in answers] if answers else None


def write_predictions(path: Path, records: list, predictions: list) -> None:
    lines = [json.dumps({**({"id": r.id} if getattr(r, "id", None) is not None else {}),
                         "source": getattr(r, "source", ""), "gold": _gold(r), "prediction": p})
             for r, p in zip(records, predictions)]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def save_head(run_dir: Path, model: TunableKnowledgeModel, recipe: Recipe) -> None:
    """Head and every other tuned weight of the mode (:func:`~kadapt.runs.tuned_model.save_tuned`)."""
    mode_info = save_tuned(run_dir, model)
    record = run_config(model, recipe.plugins, recipe.plugin_options, data_format=recipe.data.format,
                        test_format=recipe.data.test_format, max_length=recipe.data.max_length,
                        seed=recipe.training.seed)
    atomic_write_json(run_dir / RUN_CONFIG_FILE, {**record, **mode_info})


def run_config(model: KnowledgeModel, plugins: list, plugin_options: dict, *, data_format, test_format,
               max_length: int, seed: int) -> dict:
    """What ``head_config.json`` records (besides the mode's): head, plug-ins, the backbone's name with
    placeholders such as ``${KADAPT_MINILM}`` resolved (and its fingerprint, Hub revision included)."""
    fingerprint = model.backbone.fingerprint
    return {
        "objective": model.head.name,
        "config": model.head.config_dict(),
        "plugins": [str(p) for p in plugins],
        "plugin_options": plugin_options,
        "backbone": fingerprint.name_or_path or model.backbone.name,
        "backbone_fingerprint": fingerprint.to_dict(),
        "data_format": data_format,
        "test_format": test_format,
        "max_length": max_length,
        "seed": seed,
    }


def load_finetuned(run_dir: str | Path, backbone=None, *, copy_backbone: bool = True) -> KnowledgeModel:
    """Rebuild a fine-tuned model (backbone, plug-ins, head, the mode's tuned weights) from its run folder.

    The recorded fingerprint is the BASE backbone's (also after full fine-tuning): it is checked
    against the freshly loaded base model before the tuned weights go in. A ``backbone`` passed in is
    copied, not changed, by the trainable modes (unless ``copy_backbone=False``: it is then the model's).
    """
    from kadapt.core.backbone import Fingerprint
    from kadapt.runs.recipe import BackboneSection

    run_dir = Path(run_dir)
    info = read_json(run_dir / "head_config.json", "fine-tuned head config")
    own_backbone = backbone is None
    backbone = backbone or load_backbone(BackboneSection(name_or_path=info["backbone"]))
    Fingerprint.from_dict(info["backbone_fingerprint"]).check_matches(backbone.fingerprint, str(run_dir / "head_config.json"))
    section = FinetuneSection.from_dict(info.get("finetune"), str(run_dir / "head_config.json"))
    model = build_model(backbone, info["plugins"], section, copy_weights=copy_backbone and not own_backbone,
                        base=run_dir)
    model.prepare_run(info.get("plugin_options") or {}, str(run_dir / "head_config.json"))
    model.head = build_objective(info["objective"], model.feature_size, info["config"])
    model.head.bind(model)
    load_tuned(run_dir, model, info)
    model.run_info = info
    model.eval()
    return model


def evaluate_run(run_dir: str | Path, data: str | Path, fmt: str | None = None, *, on_error: str = "raise",
                 batch_size: int = 64, out: str | Path | None = None) -> dict:
    """Evaluate a fine-tuned run on a data file; writes metrics + predictions beside it."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / "head_config.json", "fine-tuned head config")
    model = load_finetuned(run_dir)
    policy = ErrorPolicy(on_error)
    records = read_records(fmt or info.get("test_format") or info["data_format"], resolve_path(str(data)), policy)
    records = model.head.prepare_records(records, "test", info.get("seed", 0))
    tok = model.backbone.tokenizer
    encoded, kept = encode_records(model.head, records, tok, info["max_length"], policy, str(data))
    require_usable(encoded, data, policy)
    metrics, predictions = evaluate_model(model, encoded, batch_size, tok.pad_token_id,
                                          model.backbone.device, with_predictions=True)
    out_dir = Path(out) if out else run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.jsonl", kept, predictions)
    result = {"data": str(data), "examples": len(encoded), "skipped_records": policy.summary(), **metrics}
    atomic_write_json(out_dir / "metrics.json", result)
    return result


def require_usable(encoded: list, data, policy: ErrorPolicy) -> None:
    """Evaluating or predicting nothing is an error (exit non-zero), not an empty success."""
    if not encoded:
        raise DataError(data, None, f"no usable records to evaluate or predict ({policy.summary() or 'the file is empty'})")
