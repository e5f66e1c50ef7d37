"""``kadapt quickstart``: a full continual-infusion story on a generated knowledge world.

1. generate a world whose facts no backbone can know (invented names) — ``world.py``;
2. build a backbone: a tiny BERT from a config with a tokenizer trained on the world's text
   (default), the MiniLM encoder of the ``minilm`` extra, or a local folder;
3. infuse a factual plug-in (relation classification on fact sentences with uninformative
   templates), then a linguistic plug-in (dependency heads), each into the zoo — checking that the
   second infusion leaves the first plug-in's files byte-identical;
4. fine-tune two downstream tasks (held-out facts; syntactic relation between two words) with
   none / F / L / F+L plug-ins and print test metrics as a table.
Everything goes through the same recipe → infuse/finetune functions the CLI uses.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.fileio import atomic_write_json, atomic_write_text
from kadapt.runs.finetune import finetune
from kadapt.runs.infuse import infuse
from kadapt.quickstart.world import WorldConfig, generate_world
from kadapt.runs.recipe import recipe_from_dict
from kadapt.store.plugin_dir import has_plugin_config

log = logging.getLogger(__name__)

TINY = {"num_layers": 4, "hidden_size": 64, "num_heads": 4, "intermediate_size": 128, "vocab_size": 1500}
ADAPTER = {"adapter_size": 64, "num_attention_heads": 4, "intermediate_size": 128}
# entity pooling (mean over the tokens between the markers): over a tiny random backbone, first-marker
# pooling needs far longer to learn pair facts (measured: dev accuracy 0.25 vs 0.87 after the same run)
RELATION = {"name": "relation_classification", "config": {"pooling": "mean"}}
COMBOS = {"bare": [], "+F": ["factual"], "+L": ["linguistic"], "+F+L": ["factual", "linguistic"]}


@dataclass
class QuickstartReport:
    table: str
    results: dict = field(default_factory=dict)
    plugin_dirs: dict = field(default_factory=dict)
    continual_ok: bool = False


def _backbone(out: Path, choice: str, corpus: list[str], seed: int) -> tuple[FrozenBackbone, str]:
    if choice == "tiny":
        from kadapt.testing.tiny import build_tiny_backbone

        path = out / "backbone"
        if not (path / "config.json").exists():
            build_tiny_backbone(path, "bert", corpus, seed=seed, **TINY)
        return FrozenBackbone.from_pretrained(path), str(path)
    if choice == "minilm":
        from kadapt.core.paths import minilm_path

        path = minilm_path()
        return FrozenBackbone.from_pretrained(path), path
    return FrozenBackbone.from_pretrained(choice), choice


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_quickstart(out: str | Path = "kadapt-quickstart", *, backbone: str = "tiny", seed: int = 0,
                   infuse_epochs: int = 20, finetune_epochs: int = 30,
                   world: WorldConfig | None = None) -> QuickstartReport:
    """Run the whole story into ``out``; re-running reuses the world, backbone and zoo entries."""
    import torch

    threads = torch.get_num_threads()
    if backbone == "tiny":
        torch.set_num_threads(1)  # tiny matmuls: extra threads only add OpenMP contention
    try:
        return _run(Path(out), backbone, seed, infuse_epochs, finetune_epochs, world or WorldConfig(seed=seed))
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, backbone: str, seed: int, infuse_epochs: int, finetune_epochs: int,
         world_config: WorldConfig) -> QuickstartReport:
    world = generate_world(out / "world", world_config)
    corpus = world.paths["corpus"].read_text(encoding="utf-8").splitlines()
    frozen, backbone_path = _backbone(out, backbone, corpus, seed)
    zoo = out / "adapters_zoo"
    common = {"backbone": {"name_or_path": backbone_path}}
    training = {"batch_size": 32, "lr": 2e-3, "warmup_ratio": 0.06, "seed": seed, "log_every": 20,
                "mixed_precision": "no", "cpu": True, "keep_checkpoints": 1}

    plugin_dirs = {}
    for name, objective, fmt, train_key, dev_key, max_len, epochs, dropout in (
        ("factual", RELATION, "trex_rc", "infuse_factual_train", "infuse_factual_dev", 48, infuse_epochs, 0.0),
        ("linguistic", {"name": "dependency_head", "config": {"max_length": 64}}, "conllu",
         "infuse_syntax_train", "infuse_syntax_dev", 64, max(1, infuse_epochs // 2), 0.1),
    ):
        if has_plugin_config(zoo / name):
            plugin_dirs[name] = zoo / name
            continue
        before = {k: _tree_digest(v) for k, v in plugin_dirs.items()}
        recipe = recipe_from_dict({
            "kind": "infuse", "name": name, **common,
            "plugin": {"kind": "kadapter", "config": {**ADAPTER, "dropout": dropout}},
            "objective": objective,
            "data": {"format": fmt, "train": str(world.paths[train_key]), "dev": str(world.paths[dev_key]),
                     "max_length": max_len},
            "training": {**training, "epochs": epochs},
            "output": {"dir": str(out / "runs" / f"infuse-{name}"), "zoo": str(zoo)},
        }, source=f"quickstart:{name}")
        result = infuse(recipe, backbone=frozen, overwrite=True)  # its own run folders
        plugin_dirs[name] = result.zoo_entry
        after = {k: _tree_digest(plugin_dirs[k]) for k in before}
        if after != before:
            raise RuntimeError(f"continual infusion changed an existing plug-in: {sorted(before)}")
    continual_ok = True

    tasks = {"facts": ("task_facts", "micro_f1"), "syntax": ("task_syntax", "accuracy")}
    results: dict = {}
    for task, (prefix, metric) in tasks.items():
        for combo, names in COMBOS.items():
            recipe = recipe_from_dict({
                "kind": "finetune", "name": f"{task}{combo}", **common,
                "plugins": [str(plugin_dirs[n]) for n in names],
                "objective": RELATION,
                "data": {"format": "trex_rc", "max_length": 48,
                         **{split: str(world.paths[f"{prefix}_{split}"]) for split in ("train", "dev", "test")}},
                "training": {**training, "epochs": finetune_epochs},
                "output": {"dir": str(out / "runs" / f"finetune-{task}{combo}")},
            }, source=f"quickstart:{task}{combo}")
            metrics = finetune(recipe, backbone=frozen, overwrite=True).metrics
            results.setdefault(task, {})[combo] = {"dev": metrics["dev"].get(metric), "test": metrics["test"][metric]}
    table = render_table(results, {t: m for t, (_, m) in tasks.items()}, backbone_path, world.counts)
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_json(out / "results.json", {"results": results, "plugins": {k: str(v) for k, v in plugin_dirs.items()},
                                             "continual_infusion_files_unchanged": continual_ok,
                                             "metrics": {t: m for t, (_, m) in tasks.items()},
                                             "world": dict(world.counts), "backbone": backbone, "seed": seed,
                                             "infuse_epochs": infuse_epochs, "finetune_epochs": finetune_epochs})
    return QuickstartReport(table, results, plugin_dirs, continual_ok)


def render_table(results: dict, metrics: dict, backbone: str, counts: dict) -> str:
    combos = list(COMBOS)
    lines = [f"kadapt quickstart — backbone: {backbone}",
             f"world: {counts.get('entities')} entities, {counts.get('facts')} facts; test metric per task",
             "", "| task (metric) | " + " | ".join(combos) + " |", "|---|" + "---:|" * len(combos)]
    for task, row in results.items():
        cells = [f"{100 * row[c]['test']:.1f}" for c in combos]
        lines.append(f"| {task} ({metrics[task]}) | " + " | ".join(cells) + " |")
    lines += ["", "bare = frozen backbone only; +F = factual plug-in; +L = linguistic plug-in; "
              "plug-ins frozen, only the task head trains."]
    return "\n".join(lines)
