"""Pieces shared by infusion and fine-tuning runs: run folder, backbone, data → encoded features."""
from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError, KadaptError, RecipeError
from kadapt.core.fileio import atomic_write_text
from kadapt.core.folders import FolderExistsError, check_path_length
from kadapt.core.objective import Objective, build_objective, objective_class
from kadapt.runs.recipe import BackboneSection, DataSection, Recipe, max_length_problem, resolve_path

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


RUN_MARKERS = ("plugin", "checkpoints", "metrics.jsonl", "metrics.json")  # recipe.yaml alone: nothing to lose


def prepare_run_dir(recipe: Recipe, out: str | Path | None = None, *, is_main: bool = True,
                    resume: bool = False, overwrite: bool = False) -> Path:
    """Create the run folder and copy the (fully resolved) recipe into it.

    A folder that already holds a run is continued with ``resume`` or replaced with ``overwrite``
    (its checkpoints are deleted first); otherwise it is an error, before any model loads.
    """
    run_dir = check_path_length(Path(out) if out else Path(recipe.output.dir), "run folder")
    if is_main:
        existing = run_dir.is_dir() and any((run_dir / m).exists() for m in RUN_MARKERS)
        if existing and not (resume or overwrite):
            raise FolderExistsError(f"{run_dir}: already holds a run; pass --resume to continue it or --overwrite "
                                    "to replace it (Python: resume=True / overwrite=True)")
        if existing and overwrite and not resume:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    return run_dir


def load_backbone(section: BackboneSection, device: str | torch.device = "cpu") -> FrozenBackbone:
    if section.dtype is not None and section.dtype not in _DTYPES:
        raise KadaptError(f"backbone.dtype {section.dtype!r} unknown; use one of {sorted(_DTYPES)}")
    path = resolve_path(section.name_or_path)
    return FrozenBackbone.from_pretrained(
        path if path.exists() else section.name_or_path,
        dtype=_DTYPES.get(section.dtype) if section.dtype else None,
        device=device,
        trust_remote_code=section.trust_remote_code,
    )


@dataclass
class RunContext:
    """What every run starts with: accelerator, run folder, backbone, error policy, data splits."""

    accelerator: object
    run_dir: Path
    backbone: FrozenBackbone
    policy: ErrorPolicy
    splits: "Splits"


def start_run(recipe: Recipe, out: str | Path | None, backbone: FrozenBackbone | None, *,
              resume: bool = False, overwrite: bool = False) -> RunContext:
    from kadapt.runs.loop import make_accelerator

    accelerator = make_accelerator(recipe.training)
    run_dir = prepare_run_dir(recipe, out, is_main=accelerator.is_main_process, resume=resume, overwrite=overwrite)
    policy = ErrorPolicy(recipe.data.on_error)
    splits = read_splits(recipe.data, data_seed(recipe), policy)
    check_label_variety(recipe, splits.train)
    length = max_length_problem(recipe)
    if length:  # before any model loads, not deep inside transformers when a long sentence comes
        raise RecipeError(f"{recipe.source}: {length}")
    backbone = backbone or load_backbone(recipe.backbone)
    return RunContext(accelerator, run_dir, backbone, policy, splits)


def check_label_variety(recipe: Recipe, train_records: list) -> None:
    """A training split with a single label teaches nothing (loss 0, accuracy 1): an error unless asked."""
    labels = objective_class(recipe.objective.name, f"{recipe.source}: objective").label_set(train_records)
    by_case: dict[str, list[str]] = {}
    for label in labels or []:
        by_case.setdefault(str(label).casefold(), []).append(str(label))
    for same in (group for group in by_case.values() if len(group) > 1):
        log.warning("%s: labels %s differ only in case; they are separate classes", recipe.data.train, same)
    if labels is not None and len(labels) < 2 and not recipe.training.allow_degenerate:
        where = resolve_path(recipe.data.train)
        raise DataError(where, None, f"the training split has {len(labels)} label(s) {labels} "
                        f"({len(train_records)} records{', data.limit=' + str(recipe.data.limit) if recipe.data.limit else ''}); "
                        "nothing to learn. Set training.allow_degenerate: true to train anyway")


@dataclass
class Splits:
    train: list
    dev: list
    test: list
    dev_parts: dict = field(default_factory=dict)  # file name -> its records, when data.dev lists several


def read_splits(data: DataSection, seed: int, policy: ErrorPolicy) -> Splits:
    """Records of each split; a dev split is carved from train when asked and no dev file exists."""
    def read(split: str, value: str | None = None) -> list:
        path = resolve_path(value if value is not None else getattr(data, split))
        fmt = {"test": data.test_format, "dev": data.dev_format}.get(split) or data.format
        if path is None:
            return []
        before = policy.skipped
        records = read_records(fmt, path, policy, data.limit, seed)
        if not records:  # every line skipped: almost always a file in another format
            raise DataError(path, None, f"no usable {fmt!r} records ({policy.skipped - before} skipped; "
                            f"{policy.summary()}); is data.{split} a {fmt} file?")
        return records

    dev_parts = {}
    if isinstance(data.dev, (list, tuple)):
        dev_parts = {Path(resolve_path(v)).name: read("dev", v) for v in data.dev}
        if len(dev_parts) != len(data.dev):
            raise RecipeError(f"data.dev: two files share a name ({list(data.dev)}); the names label per_dev")
    train, test = read("train"), read("test")
    if not test and data.test_fraction > 0 and train:
        test, train = carve(train, data.test_fraction, seed + 1)
    dev = [r for part in dev_parts.values() for r in part] if dev_parts else read("dev")
    if not dev and data.dev_fraction > 0 and train:
        dev, train = carve(train, data.dev_fraction, seed)
    if policy.skipped:
        policy.log_summary(log)
    return Splits(train, dev, test, dev_parts if len(dev_parts) > 1 else {})


def carve(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """(carved, rest): a seeded ``fraction`` of ``records`` (at least one) and the rest, both in the seeded order."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(records) * fraction))
    return [records[i] for i in order[:cut]], [records[i] for i in order[cut:]]


def data_seed(recipe: Recipe) -> int:
    """The seed of the data selection: ``data.seed``, else ``training.seed``."""
    return recipe.training.seed if recipe.data.seed is None else recipe.data.seed


def encode_records(objective: Objective, records: list, tokenizer, max_length: int, policy: ErrorPolicy,
                   what: str) -> tuple[list[dict], list]:
    """Encode with the objective; bad records (cut-off entities, unknown labels) go through ``policy``.

    Returns the features and the records they came from (same order, skipped ones left out).
    """
    features, kept = [], []
    before = policy.skipped
    for record in records:
        try:
            features.append(objective.encode(record, tokenizer, max_length))
            kept.append(record)
        except DataError as err:
            policy.handle(err)
    skipped = policy.skipped - before
    if skipped:
        log.warning("%s: skipped %d of %d records while encoding (see warnings above)", what, skipped, len(records))
    return features, kept


def build_head(model, section, train_records: list, source: str):
    """The recipe's objective (``section``: name + config) on ``model``: configured from the training
    records (label inventories), built for the model's feature size, set as its head, then bound."""
    cls = objective_class(section.name, f"{source}: objective")
    config = cls.configure_for_backbone(cls.configure(section.config, train_records), model.backbone.spec)
    model.head = build_objective(section.name, model.feature_size, config, source=f"{source}: objective")
    model.head.bind(model)
    return model.head
