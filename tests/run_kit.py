"""Helpers shared by the training / infusion / fine-tuning / CLI / DDP tests (not a test module).

Everything is tiny: a 2-layer hidden-32 BERT (built by the ``tiny_backbone_dir`` fixture), a
1-layer width-32 K-Adapter, a few dozen examples from a small generated world
(:func:`kadapt.quickstart.world.generate_world`). Run as a script, it is the DDP launcher target:
``python tests/run_kit.py RECIPE.yaml OUT_DIR`` infuses ``RECIPE`` into ``OUT_DIR``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

#: keyword arguments of the ``tiny_backbone_dir`` fixture (same kwargs = one cached build per session)
BACKBONE_KW = {"num_layers": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}
HIDDEN = BACKBONE_KW["hidden_size"]
ADAPTER = {"adapter_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
           "num_transformer_layers": 1, "dropout": 0.1}


def small_world(out_dir: Path):
    """A generated world with a few dozen examples per file (8 relation labels, CoNLL-U trees)."""
    from kadapt.quickstart.world import WorldConfig, generate_world

    return generate_world(out_dir, WorldConfig(
        seed=1, n_people=6, n_cities=4, n_countries=2, n_companies=3,
        syntax_train_sentences=24, syntax_dev_sentences=8, syntax_task_sizes=(24, 16, 16)))


def training(**overrides) -> dict:
    base = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "log_every": 1, "seed": 7,
            "mixed_precision": "no", "cpu": True, "keep_checkpoints": 3}
    return {**base, **overrides}


def factual_recipe(world, backbone: Path, out: Path, *, name: str = "factual", limit: int | None = 24,
                   zoo: Path | None = None, adapter: dict | None = None, **train) -> dict:
    """An ``infuse`` recipe: K-Adapter + relation classification on the world's fact sentences."""
    return {
        "kind": "infuse", "name": name,
        "backbone": {"name_or_path": str(backbone)},
        "plugin": {"kind": "kadapter", "config": {**ADAPTER, **(adapter or {})}},
        "objective": {"name": "relation_classification"},
        "data": {"format": "trex_rc", "train": str(world["infuse_factual_train"]),
                 "dev": str(world["infuse_factual_dev"]), "max_length": 48, "limit": limit},
        "training": training(**train),
        "output": {"dir": str(out), "zoo": str(zoo) if zoo else None},
    }


def linguistic_recipe(world, backbone: Path, out: Path, *, name: str = "linguistic",
                      zoo: Path | None = None, **train) -> dict:
    """An ``infuse`` recipe: K-Adapter + dependency head prediction on the world's CoNLL-U trees."""
    return {
        "kind": "infuse", "name": name,
        "backbone": {"name_or_path": str(backbone)},
        "plugin": {"kind": "kadapter", "config": dict(ADAPTER)},
        "objective": {"name": "dependency_head", "config": {"max_length": 48}},
        "data": {"format": "conllu", "train": str(world["infuse_syntax_train"]),
                 "dev": str(world["infuse_syntax_dev"]), "max_length": 48},
        "training": training(**train),
        "output": {"dir": str(out), "zoo": str(zoo) if zoo else None},
    }


def finetune_recipe(world, backbone: Path, out: Path, plugins: list = (), **train) -> dict:
    """A ``finetune`` recipe: relation classification on the world's held-out fact task."""
    return {
        "kind": "finetune", "name": "facts",
        "backbone": {"name_or_path": str(backbone)},
        "plugins": [str(p) for p in plugins],
        "objective": {"name": "relation_classification"},
        "data": {"format": "trex_rc", "max_length": 48,
                 **{split: str(world[f"task_facts_{split}"]) for split in ("train", "dev", "test")}},
        "training": training(**{"epochs": 2, "lr": 1e-2, **train}),
        "output": {"dir": str(out)},
    }


def write_yaml(path: Path, recipe: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def train_losses(run_dir: Path) -> list[float]:
    from kadapt.runs.run_log import read_metrics

    return [r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r.get("split") == "train"]


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path → digest)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}



def main(argv: list[str]) -> int:
    """DDP launcher target: infuse the recipe at ``argv[0]`` into run folder ``argv[1]`` (further
    arguments: ``key=value`` recipe overrides, ``--resume``)."""
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import load_recipe

    torch.set_num_threads(1)
    resume = "--resume" in argv
    overrides = [a for a in argv[2:] if a != "--resume"]
    result = infuse(load_recipe(argv[0], overrides), out=argv[1], resume=resume)
    print(json.dumps({"steps": result.train.global_step, "plugin_dir": str(result.plugin_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
