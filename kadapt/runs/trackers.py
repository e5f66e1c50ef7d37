"""Experiment trackers of a run (``training.report_to``) through ``accelerate``'s tracker classes.

The JSONL + PNG run log stays the default and is always written; each name in ``report_to``
(``tensorboard``, ``wandb``, ``mlflow``, ``comet_ml``, ``aim``, ``clearml``, ``dvclive``, ``swanlab``,
``trackio``) adds a tracker that gets every record the run log gets: training records as
``train/loss``, ``train/lr``, dev records as ``dev/<metric>``, at the optimizer step. Trackers are
optional installs (``pip install 'kadapt[tensorboard]'``, ``pip install wandb`` ...); a name that is not
installed is refused in one line before the first step (accelerate alone would drop it with a warning).
Logging folders (tensorboard, mlflow, aim) are ``<run folder>/trackers``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from kadapt.core.errors import RecipeError

#: tracker name → (modules any of which makes it available, what to install)
TRACKER_MODULES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install 'kadapt[tensorboard]' (tensorboardX)"),
    "wandb": (("wandb",), "pip install wandb"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "comet_ml": (("comet_ml",), "pip install comet_ml"),
    "aim": (("aim",), "pip install aim"),
    "clearml": (("clearml",), "pip install clearml"),
    "dvclive": (("dvclive",), "pip install dvclive"),
    "swanlab": (("swanlab",), "pip install swanlab"),
    "trackio": (("trackio",), "pip install trackio"),
}


def check_report_to(names, source: str = "training.report_to") -> None:
    """One line for a name accelerate has no tracker for, or whose package is not installed."""
    for name in names:
        if name not in TRACKER_MODULES:
            raise RecipeError(f"{source}: unknown tracker {name!r}; known: {sorted(TRACKER_MODULES)}")
        modules, install = TRACKER_MODULES[name]
        if not any(importlib.util.find_spec(module) is not None for module in modules):
            raise RecipeError(f"{source}: tracker {name!r} is not installed ({install}); "
                              "the JSONL + PNG run log needs nothing")


def report_to_problems(recipe) -> list[str]:
    """``kadapt recipe check``: the tracker problem of a recipe, as a one-item list ([] when fine)."""
    try:
        check_report_to(recipe.training.report_to)
    except RecipeError as err:
        return [f"{recipe.source}: {err}"]
    return []


def start_trackers(names, run_dir: Path, config) -> list:
    """Started accelerate trackers for ``names`` (checked first), the run's training config stored."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    check_report_to(names)
    trackers = []
    for name in names:
        cls = LOGGER_TYPE_TO_CLASS[name]
        if cls.requires_logging_directory:
            tracker = cls(Path(run_dir).name, str(Path(run_dir) / "trackers"))
        else:
            tracker = cls(Path(run_dir).name)
        tracker.start()
        tracker.store_init_configuration(hyperparameters(config))
        trackers.append(tracker)
    return trackers


def hyperparameters(config) -> dict:
    """The training config as tracker hyperparameters (bool, int, float, str; others as text)."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in values.items()}


def tracker_values(record: dict) -> tuple[int | None, dict]:
    """``(step, {"<split>/<metric>": value})`` of a run-log record: its numeric values, split-prefixed."""
    split = record.get("split", "train")
    values = {f"{split}/{k}": v for k, v in record.items()
              if k not in ("step", "epoch", "split") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return record.get("step"), values
