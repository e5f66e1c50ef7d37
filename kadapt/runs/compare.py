"""``kadapt compare``: does the infused knowledge help, beyond the extra capacity of a plug-in?

For fine-tune recipes (tasks) and plug-ins, every task head is trained over

- ``bare``: the backbone's last state only;
- ``lower layers a,b,c`` (second control): the last state + the lower hidden states the plug-ins read,
  concatenated (no adapter);
- for each plug-in P and infusion seed s: ``P`` (infused) and ``R(P)``, its **R-twin**: a plug-in of the
  identical kind, config and backbone, initialised exactly as P's infusion began (seed s) and never infused;
  built and saved (``OUT/twins``) automatically;
- with several plug-ins: ``all`` (every infused plug-in of seed s) and ``R(all)`` (their twins);

over every head seed (× infusion seed). A plug-in given as an infuse recipe is re-infused per infusion seed
(``OUT/infusions/<name>/seed-<s>``, training seed s, the same data selection, the hidden-state cache on);
a plug-in folder is one infusion. Splits are read once per task (``data.seed``, default the recipe's
``training.seed``), so every variant sees the same train/dev/test examples.

Frozen variants with concatenation fusion (``finetune`` defaults) train on features computed once
(:mod:`kadapt.runs.compare_features`); other fine-tuning modes (``finetune.backbone: full``, fusion ...)
run :func:`kadapt.runs.finetune.finetune` per cell (the lower-layers control needs frozen features and is
then left out, which the JSON records). Each cell writes its result when done, so an interrupted compare
resumed with ``resume=True`` (``--resume``) redoes only the missing cells and prints the same table.

Outputs in ``OUT``: ``compare.json`` (meta, one row per run tagged ``twin`` and ``infusion_seed``, the
summary with mean ± std and paired bootstrap CIs; see :mod:`kadapt.runs.compare_stats`), ``compare.md``
and ``compare.png``.
"""
from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kadapt.core.backbone import Fingerprint
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin, plugin_class
from kadapt.core.fileio import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors
from kadapt.core.paths import resolve_path
from kadapt.runs.compare_stats import DRAWS, plot_summary, render_table, summarize_rows
from kadapt.runs.recipe import Recipe, load_recipe
from kadapt.store.plugin_dir import config_file, has_plugin_config, load_plugin, read_record, save_plugin

log = logging.getLogger(__name__)


class CompareError(KadaptError):
    """A comparison that cannot run as asked (one line naming the file or option)."""


@dataclass
class PluginSource:
    """A plug-in to measure: an infuse recipe (re-infused per infusion seed) or a ready folder."""

    name: str
    recipe: Recipe | None = None
    folder: Path | None = None


@dataclass
class PluginInstance:
    """One infusion of a plug-in and its R-twin (both folders)."""

    name: str
    seed: int | None
    infused: Path
    twin: Path


@dataclass
class Cell:
    """One head training: a task, a variant (its feature blocks or plug-in folders), a head seed."""

    task: str
    variant: str
    head_seed: int
    blocks: list[str]
    plugin_dirs: list[Path] = field(default_factory=list)
    twin: bool = False
    infusion_seed: int | None = None
    kind: str = "plugin"  # bare | lower_layers | plugin | all
    lower: str | None = None  # the lower-layers block this variant is compared with

    @property
    def id(self) -> str:
        seed = "" if self.infusion_seed is None else f"-inf{self.infusion_seed}"
        return f"{self.variant.replace('(', '_').replace(')', '').replace(' ', '_').replace(',', '-')}{seed}-head{self.head_seed}"


@dataclass
class CompareResult:
    out: Path
    table: str
    results: dict


def plugin_source(text: str) -> PluginSource:
    """``[NAME=]PATH``: an infuse recipe (``.yaml``/``.yml``) or a plug-in folder; NAME defaults to the
    recipe's name or the folder's name."""
    name, _, path = text.rpartition("=") if "=" in text else ("", "", text)
    if path.endswith((".yaml", ".yml")):
        recipe = load_recipe(path)
        if recipe.kind != "infuse":
            raise CompareError(f"{path}: --plugins takes infuse recipes or plug-in folders; this recipe is kind {recipe.kind!r}")
        return PluginSource(name or recipe.name, recipe=recipe)
    folder = Path(path)
    read_record(folder)  # a clear error for a folder that is not a plug-in
    return PluginSource(name or folder.name, folder=folder)


def check_inputs(recipes: list[Recipe], sources: list[PluginSource]) -> None:
    """Bad inputs, before any model loads: each one line naming the file and key."""
    if not recipes:
        raise CompareError("compare needs at least one fine-tune recipe")
    for recipe in recipes:
        if recipe.kind != "finetune":
            raise CompareError(f"{recipe.source}: compare needs fine-tune recipes; this one is kind {recipe.kind!r}")
        if not recipe.data.test and not recipe.data.test_fraction:
            raise CompareError(f"{recipe.source}: no test split (data.test is not set and data.test_fraction is 0); "
                               "compare reports test metrics: add data.test or data.test_fraction")
        if resolve_path(recipe.backbone.name_or_path) != resolve_path(recipes[0].backbone.name_or_path):
            raise CompareError(f"{recipe.source}: backbone.name_or_path {recipe.backbone.name_or_path!r} differs from "
                               f"{recipes[0].source}'s {recipes[0].backbone.name_or_path!r}; one backbone per compare")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise CompareError(f"--plugins: two plug-ins share a name ({names}); name them NAME=PATH")
    first = recipes[0]
    for source in sources:
        if source.recipe and resolve_path(source.recipe.backbone.name_or_path) != resolve_path(first.backbone.name_or_path):
            raise CompareError(f"{source.recipe.source}: plug-in {source.name!r} is infused on backbone "
                               f"{source.recipe.backbone.name_or_path!r}, but {first.source} uses "
                               f"{first.backbone.name_or_path!r}")


def check_folder_backbone(source: PluginSource, backbone, recipe: Recipe) -> None:
    record = read_record(source.folder)
    where = config_file(source.folder, note=False)
    recorded = Fingerprint.from_dict(record["backbone"], source=str(where))
    diffs = recorded.differences(backbone.fingerprint)
    if diffs:
        raise CompareError(f"{where}: plug-in {source.name!r} was infused on another backbone "
                           f"than {recipe.source}'s ({recipe.backbone.name_or_path}): {diffs[0]}")


# ---------------------------------------------------------------------------------------------- plug-ins


def infused_instances(source: PluginSource, seeds: list[int], backbone, out: Path) -> list[PluginInstance]:
    """The plug-in's infusions (made or reused) and their R-twins (built, saved, or reused)."""
    if source.folder is not None:
        seed = _recorded_seed(source.folder)
        twin = out / "twins" / source.name / f"seed-{seed if seed is not None else 0}"
        _save_twin(read_record(source.folder), seed or 0, backbone, twin, source.folder)
        return [PluginInstance(source.name, seed, source.folder, twin)]
    instances = []
    for seed in seeds or [source.recipe.training.seed]:
        folder = _infuse_seed(source, seed, backbone, out / "infusions" / source.name / f"seed-{seed}")
        twin = out / "twins" / source.name / f"seed-{seed}"
        _save_twin(read_record(folder), seed, backbone, twin, folder)
        instances.append(PluginInstance(source.name, seed, folder, twin))
    return instances


def _recorded_seed(folder: Path) -> int | None:
    """The infusion seed of a plug-in folder written by ``kadapt infuse`` (its run folder's recipe)."""
    recipe_file = folder.parent / "recipe.yaml"
    return load_recipe(str(recipe_file)).training.seed if recipe_file.exists() else None


def _infuse_seed(source: PluginSource, seed: int, backbone, run_dir: Path) -> Path:
    from kadapt.runs.context import data_seed
    from kadapt.runs.infuse import infuse

    plugin_dir = run_dir / "plugin"
    if has_plugin_config(plugin_dir):
        log.info("reusing %s", plugin_dir)
        return plugin_dir
    recipe = copy.deepcopy(source.recipe)
    recipe.data.seed = data_seed(source.recipe)  # the same data for every infusion seed
    recipe.training.seed = seed
    recipe.training.cache = plugin_class(recipe.plugin.kind).reads_shared_states_only
    recipe.output.zoo = None
    log.info("infusing %s with seed %d into %s", source.name, seed, run_dir)
    return infuse(recipe, out=run_dir, backbone=backbone, overwrite=True).plugin_dir


def _save_twin(record: dict, seed: int, backbone, twin: Path, infused: Path) -> None:
    """The R-twin: the infused plug-in's kind and config, seeded as its infusion began, never trained."""
    if has_plugin_config(twin):
        return
    torch.manual_seed(seed)  # the draw StandardPipeline.build makes before building the plug-in
    plugin = build_plugin(record["kind"], record["config"], backbone.spec, source=str(config_file(infused, note=False)))
    card = {"summary": f"R-twin of {infused}: the same kind and config, initialised with seed {seed}, never infused "
                       "(kadapt compare's capacity control).", "data": "none (not infused)", "metrics": {}}
    save_plugin(plugin, twin, backbone.fingerprint, objectives=[], card=card)


# ---------------------------------------------------------------------------------------------- plan


def plan_cells(task: str, instances: dict[str, list[PluginInstance]], layer_blocks: dict[str, tuple[int, ...]],
               lower_of: dict[str, str], head_seeds: list[int], infusion_seeds_used: list[int | None],
               stack_lower: bool = False) -> list[Cell]:
    """Every (variant, head seed) cell of one task, in a fixed order. ``stack_lower``: also each plug-in
    (and R-twin) on top of the lower-layers control (``F+layers``, ``R(F+layers)``): does the plug-in add
    anything to the strongest no-adapter features?"""
    cells = [Cell(task, "bare", h, ["last"], kind="bare") for h in head_seeds]
    for block, layers in layer_blocks.items():
        cells += [Cell(task, f"lower layers {','.join(map(str, layers))}", h, ["last", block], kind="lower_layers",
                       lower=block) for h in head_seeds]
    for name, runs in instances.items():
        for inst in runs:
            for twin in (False, True):
                variant = f"R({name})" if twin else name
                block = _block_name(inst, twin)
                cells += [Cell(task, variant, h, ["last", block], [inst.twin if twin else inst.infused], twin,
                               inst.seed, lower=lower_of[name]) for h in head_seeds]
                if stack_lower and layer_blocks:
                    stacked = f"R({name}+layers)" if twin else f"{name}+layers"
                    cells += [Cell(task, stacked, h, ["last", lower_of[name], block], [inst.twin if twin else inst.infused],
                                   twin, inst.seed, lower=lower_of[name]) for h in head_seeds]
    if len(instances) > 1:
        for seed in infusion_seeds_used:
            chosen = [inst for runs in instances.values() for inst in runs if inst.seed == seed]
            if len(chosen) != len(instances):
                continue
            for twin in (False, True):
                blocks = ["last"] + [_block_name(inst, twin) for inst in chosen]
                dirs = [inst.twin if twin else inst.infused for inst in chosen]
                cells += [Cell(task, "R(all)" if twin else "all", h, blocks, dirs, twin, seed, kind="all")
                          for h in head_seeds]
    return cells


def _block_name(inst: PluginInstance, twin: bool) -> str:
    seed = "x" if inst.seed is None else inst.seed
    return f"{'twin' if twin else 'plugin'}-{inst.name}-seed-{seed}"


def lower_layer_blocks(instances: dict[str, list[PluginInstance]], backbone) -> tuple[dict, dict]:
    """``({block: layers}, {plug-in name: block})``: the lower hidden states each plug-in reads."""
    blocks, lower_of = {}, {}
    for name, runs in instances.items():
        plugin = load_plugin(runs[0].infused, backbone).plugin
        layers = tuple(k for k in plugin.required_layers() if k != backbone.spec.num_layers)
        block = "layers-" + "-".join(map(str, layers))
        blocks[block], lower_of[name] = layers, block
    return blocks, lower_of


# ---------------------------------------------------------------------------------------------- tasks


@dataclass
class TaskData:
    """One task's splits, encoded once: the head class and config, the kept-position keys and, for the
    frozen path, the per-split tensors (blocks are files under ``folder``)."""

    recipe: Recipe
    config: dict
    keys: tuple[str, ...] | None
    tensors: dict[str, dict[str, torch.Tensor]]
    folder: Path
    states_seconds: float = 0.0  # getting the backbone states: hidden-state cache build or read


def frozen_path(recipe: Recipe, keys) -> bool:
    """Features computed once: frozen backbone and plug-ins, concatenation, a head with kept positions."""
    from kadapt.runs.recipe import FinetuneSection

    section = recipe.finetune or FinetuneSection()
    return keys is not None and (section.backbone, section.plugins, section.fusion) == ("frozen", "frozen", "concat")


def prepare_task(recipe: Recipe, backbone, plugins: dict[str, object], layer_blocks: dict, out: Path) -> TaskData:
    """Read and encode the splits once; on the frozen path compute the missing feature blocks."""
    from kadapt.core.objective import build_objective, objective_class
    from kadapt.data.policy import ErrorPolicy
    from kadapt.runs.compare_features import compute_blocks, split_tensors
    from kadapt.runs.context import data_seed, encode_records, read_splits

    policy, seed = ErrorPolicy(recipe.data.on_error), data_seed(recipe)
    splits = read_splits(recipe.data, seed, policy)
    config = objective_class(recipe.objective.name, f"{recipe.source}: objective").configure(recipe.objective.config, splits.train)
    head = build_objective(recipe.objective.name, backbone.spec.hidden_size, config, source=f"{recipe.source}: objective")
    keys = head.kept_positions()
    folder = out / "features" / recipe.name
    if not frozen_path(recipe, keys):
        return TaskData(recipe, config, None, {}, folder)
    tok, pad_id = backbone.tokenizer, backbone.tokenizer.pad_token_id
    tensors, seconds = {}, 0.0
    for split in ("train", "dev", "test"):
        records = head.prepare_records(getattr(splits, split), split, seed)
        encoded, _ = encode_records(head, records, tok, recipe.data.max_length, policy, f"{recipe.name} {split}")
        if not encoded:
            raise CompareError(f"{recipe.source}: no usable {split} examples ({policy.summary() or 'empty split'})")
        t0 = time.perf_counter()
        cache = _states_cache(recipe, backbone, plugins, split, encoded)
        seconds += time.perf_counter() - t0
        compute_blocks(backbone, plugins, layer_blocks, encoded, keys, folder / split, cache)
        tensors[split] = split_tensors(encoded, keys, pad_id)
    return TaskData(recipe, config, keys, tensors, folder, round(seconds, 1))


def _states_cache(recipe: Recipe, backbone, plugins: dict, split: str, encoded: list[dict]):
    """Backbone states of a split from the hidden-state cache (single-sequence inputs), else None."""
    from kadapt.core.model import KnowledgeModel
    from kadapt.runs.recipe import split_values
    from kadapt.store.distributed_cache import cached_split

    first = encoded[0]["input_ids"]
    if first and isinstance(first[0], (list, tuple)):
        return None  # grouped inputs: live passes
    files = [resolve_path(v) for v in split_values(recipe.data, split)] or [resolve_path(recipe.data.train)]
    layers = KnowledgeModel(backbone, list(plugins.values())).required_layers()
    config = copy.deepcopy(recipe.training)
    config.batch_size = 64
    return cached_split(backbone, layers, encoded, files, recipe.data.max_length, config,
                        backbone.tokenizer.pad_token_id, f"{recipe.name} {split}")


# ---------------------------------------------------------------------------------------------- cells


def run_cell(cell: Cell, task: TaskData, backbone, folder: Path) -> dict:
    """Train one head (frozen features, or a ``finetune`` run) and return its row; writes
    ``row.json`` + ``counts.safetensors`` (per-example test counts) last, so a cell is done or redone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if task.keys is not None:
        dev, test, keys, counts = _train_on_blocks(cell, task, backbone, folder)
    else:
        dev, test, keys, counts = _train_finetune(cell, task, backbone, folder)
    row = {"task": cell.task, "cell": cell.id, "variant": cell.variant, "kind": cell.kind, "twin": cell.twin,
           "infusion_seed": cell.infusion_seed, "head_seed": cell.head_seed,
           "plugins": [str(p) for p in cell.plugin_dirs], "blocks": cell.blocks, "lower": cell.lower,
           "dev": dev, "test": test, "count_keys": keys}
    save_tensors(folder / "counts.safetensors", {"counts": counts})
    atomic_write_json(folder / "row.json", row)
    return row


def _train_on_blocks(cell: Cell, task: TaskData, backbone, folder: Path):
    from kadapt.core.objective import build_objective
    from kadapt.runs.compare_features import FeatureModel, RowCollate, load_block, per_example_counts
    from kadapt.runs.loop import evaluate_model, train

    data = {}
    for split, tensors in task.tensors.items():
        feats = torch.cat([load_block(task.folder / split, b) for b in cell.blocks], dim=-1)
        data[split] = {**tensors, "features": feats}
    recipe = task.recipe
    torch.manual_seed(cell.head_seed)
    head = build_objective(recipe.objective.name, data["train"]["features"].shape[-1], task.config)
    model = FeatureModel(backbone, head)
    config = copy.deepcopy(recipe.training)
    config.seed, config.seeds, config.cache, config.length_bucketing = cell.head_seed, [], False, False
    rows = {split: list(range(d["features"].shape[0])) for split, d in data.items()}
    result = train(model, rows["train"], rows["dev"], config, folder, pad_id=0,
                   collate_fn=RowCollate(data["train"]), dev_collate_fn=RowCollate(data["dev"]))
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    test, _ = evaluate_model(model, rows["test"], 256, 0, torch.device("cpu"), collate_fn=RowCollate(data["test"]))
    keys, counts = per_example_counts(head, data["test"])
    return result.final_dev, test, keys, counts


def _train_finetune(cell: Cell, task: TaskData, backbone, folder: Path):
    """A ``finetune`` run of the cell (a trainable mode); per-example test counts from the tuned model."""
    from kadapt.runs.context import data_seed
    from kadapt.runs.finetune import finetune, load_finetuned

    recipe = copy.deepcopy(task.recipe)
    recipe.data.seed = data_seed(task.recipe)
    recipe.training.seed, recipe.training.seeds = cell.head_seed, []
    result = finetune(recipe, plugins=[str(p) for p in cell.plugin_dirs], out=folder / "run", backbone=backbone,
                      overwrite=True)
    shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)
    model = load_finetuned(folder / "run", backbone)
    keys, counts = _tuned_counts(model, recipe)
    return result.metrics["dev"], result.metrics["test"], keys, counts


def _tuned_counts(model, recipe: Recipe):
    from kadapt.data.encoding import collate
    from kadapt.data.policy import ErrorPolicy
    from kadapt.runs.context import data_seed, encode_records, read_splits

    policy = ErrorPolicy(recipe.data.on_error)
    splits = read_splits(recipe.data, data_seed(recipe), policy)
    records = model.head.prepare_records(splits.test, "test", recipe.training.seed)
    tok = model.backbone.tokenizer
    encoded, _ = encode_records(model.head, records, tok, recipe.data.max_length, policy, "test")
    rows: list[dict] = []
    with torch.no_grad():
        for start in range(0, len(encoded), 32):
            batch = collate(encoded[start:start + 32], tok.pad_token_id)
            logits = model(batch).logits.float()
            for i in range(logits.shape[0]):
                one = {k: v[i:i + 1] for k, v in batch.items()}
                rows.append(model.head.count(logits[i:i + 1], one))
    keys = sorted({k for r in rows for k in r})
    return keys, torch.tensor([[float(r.get(k, 0.0)) for k in keys] for r in rows], dtype=torch.float64)


def load_row(folder: Path) -> tuple[dict, np.ndarray] | None:
    """A finished cell's row and counts, or None."""
    if not (folder / "row.json").exists():
        return None
    return read_json(folder / "row.json", "compare cell"), load_tensors(folder / "counts.safetensors")[0]["counts"].numpy()


# ---------------------------------------------------------------------------------------------- driver


def compare(recipes: list[Recipe], plugins: list[PluginSource], *, head_seeds: list[int],
            infusion_seeds: list[int] | None = None, out: str | Path = "runs/compare", resume: bool = False,
            overwrite: bool = False, draws: int = DRAWS, backbone=None, progress: bool = True,
            stack_lower: bool = False) -> CompareResult:
    """Run (or resume) the comparison and write ``compare.json`` / ``compare.md`` / ``compare.png``
    (``stack_lower``: see :func:`plan_cells`)."""
    from tqdm.auto import tqdm

    from kadapt.core.folders import FolderExistsError
    from kadapt.core.objective import objective_class
    from kadapt.runs.context import load_backbone

    check_inputs(recipes, plugins)
    out = Path(out)
    if (out / "plan.json").exists() and not (resume or overwrite):
        raise FolderExistsError(f"{out}: already holds a comparison; pass --resume to continue it or --overwrite to "
                                "start over (Python: resume=True / overwrite=True)")
    if overwrite and not resume:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    started, timings = time.perf_counter(), {}
    backbone = backbone or load_backbone(recipes[0].backbone)
    for source in plugins:
        if source.folder is not None:
            check_folder_backbone(source, backbone, recipes[0])
    seeds = list(infusion_seeds or [])  # none given: each infuse recipe's own training.seed
    t0 = time.perf_counter()
    instances = {s.name: infused_instances(s, seeds, backbone, out) for s in plugins}
    timings["infusions and twins"] = round(time.perf_counter() - t0, 1)
    layer_blocks, lower_of = lower_layer_blocks(instances, backbone) if instances else ({}, {})
    loaded = {_block_name(i, twin): load_plugin(i.twin if twin else i.infused, backbone).plugin
              for runs in instances.values() for i in runs for twin in (False, True)}
    used_seeds = list(dict.fromkeys(i.seed for runs in instances.values() for i in runs))
    atomic_write_json(out / "plan.json", {"tasks": [r.source for r in recipes], "plugins": [s.name for s in plugins],
                                          "head_seeds": head_seeds, "infusion_seeds": used_seeds})
    rows, counts, summarize, metric, skipped = [], [], {}, {}, []
    for recipe in recipes:
        t0 = time.perf_counter()
        task = prepare_task(recipe, backbone, loaded, layer_blocks, out)
        timings[f"{recipe.name}: read + features"] = round(time.perf_counter() - t0, 1)
        timings[f"{recipe.name}: backbone states (cache build or read)"] = task.states_seconds
        head_class = objective_class(recipe.objective.name)
        summarize[recipe.name], metric[recipe.name] = head_class.summarize, head_class.main_metric
        cells = plan_cells(recipe.name, instances, layer_blocks if task.keys is not None else {}, lower_of,
                           head_seeds, used_seeds, stack_lower)
        if task.keys is None and layer_blocks:
            skipped.append(f"{recipe.name}: lower-layers control (needs frozen features; finetune mode or head reads whole sequences)")
        t0 = time.perf_counter()
        for cell in tqdm(cells, desc=recipe.name, disable=not progress):
            folder = out / "cells" / recipe.name / cell.id
            done = load_row(folder)
            if done is None:
                run_cell(cell, task, backbone, folder)
                done = load_row(folder)
            rows.append(done[0])
            counts.append(done[1])
        timings[f"{recipe.name}: heads"] = round(time.perf_counter() - t0, 1)
    summary = summarize_rows(rows, counts, summarize, metric, draws)
    table = render_table(summary)
    results = {"meta": {"tasks": [r.source for r in recipes], "plugins": {s.name: str(s.folder or s.recipe.source) for s in plugins},
                        "head_seeds": head_seeds, "infusion_seeds": used_seeds, "draws": draws,
                        "backbone": recipes[0].backbone.name_or_path, "skipped": skipped},
               "rows": rows, "summary": summary}
    atomic_write_json(out / "compare.json", results)
    atomic_write_text(out / "compare.md", table)
    plot_summary(summary, out / "compare.png")
    atomic_write_json(out / "timings.json", {**timings, "total": round(time.perf_counter() - started, 1)})
    return CompareResult(out, table, results)

