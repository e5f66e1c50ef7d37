#!/usr/bin/env python
"""Knowledge-effect benchmark: does the infused knowledge help downstream, beyond a plug-in's capacity?

A thin call of ``kadapt compare`` (:func:`kadapt.runs.compare.compare`) on the shared real data with the
MiniLM encoder on CPU: tasks from the ``recipes/finetune/*_small.yaml`` recipes, plug-ins from
``recipes/infuse/*_small.yaml`` (re-infused per infusion seed, hidden-state cache on), every variant
(bare, lower layers, each plug-in, its R-twin, all) over head seeds × infusion seeds. Each run is a
*grid* (``--grid NAME``: one lever setting); its summary, command and timings are merged into
``benchmarks/results/knowledge_effect.json``, from which ``benchmarks/tables.py`` renders the README table.

    python benchmarks/knowledge_effect.py --grid base --tasks open_entity semeval \\
        --plugins F=recipes/infuse/factual_small.yaml --infuse-set data.limit=6000
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fact_recall.py beside this script
RESULTS = HERE / "results" / "knowledge_effect.json"
RECIPES = HERE.parent / "recipes"
TASKS = {  # task -> (recipe, overrides)
    "open_entity": ("finetune/open_entity_small.yaml", []),
    "semeval": ("finetune/semeval2010_small.yaml", ["data.test_fraction=0.25"]),
    "fewrel": ("finetune/fewrel_small.yaml", ["objective.config.train_episodes=300",
                                               "objective.config.dev_episodes=100", "objective.config.eval_episodes=300"]),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", help="name of this lever setting in the results JSON")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="only merge the grids of these results files (grids run "
                   "in parallel with their own --results) into --results, then exit")
    p.add_argument("--note", default="", help="what the grid changes (kept in the JSON)")
    p.add_argument("--out", default=None, help="compare folder (default: runs/knowledge-effect/GRID)")
    p.add_argument("--tasks", nargs="+", default=["open_entity", "semeval"], choices=[*TASKS, "trex", "recall"],
                   help="trex: relation classification on T-REx sentences of facts held out of the first infused "
                        "plug-in's infusion; recall: the fact-recall probe (both: benchmarks/fact_recall.py)")
    p.add_argument("--plugins", nargs="+", default=["F=recipes/infuse/factual_small.yaml"],
                   help="[NAME=]infuse recipe or plug-in folder")
    p.add_argument("--infuse-set", nargs="*", default=[], help="key=value overrides of every infuse recipe")
    p.add_argument("--task-set", nargs="*", default=[], help="key=value overrides of every task recipe")
    p.add_argument("--head-seeds", nargs="+", type=int, default=[42, 7, 1])
    p.add_argument("--infusion-seeds", nargs="+", type=int, default=[42, 7, 1])
    p.add_argument("--stack-lower-layers", action="store_true", help="also F+layers and R(F+layers) (kadapt compare)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--cache-timing", type=int, metavar="SEED", help="instead of a grid: time one infusion of the "
                   "first plug-in recipe (with --infuse-set) at SEED three ways - no cache, cache built from empty, "
                   "cache hit - into the results' cache_timing (work folder: --out, default runs/knowledge-effect/cache-timing)")
    return p.parse_args(argv)


def merge(files: list[str], target: Path) -> None:
    """Write ``target`` from the grids of ``files`` (in order): a grid found in several files (a comparison
    resumed or widened by later calls) keeps the last file's results and every call's timings, in order; the
    last ``cache_timing`` found is kept."""
    data = {"written_by": "benchmarks/knowledge_effect.py", "merged_from": list(files), "grids": {}}
    for file in files:
        found = json.loads(Path(file).read_text(encoding="utf-8"))
        if "cache_timing" in found:
            data["cache_timing"] = found["cache_timing"]
        for grid, entry in found["grids"].items():
            calls = data["grids"].get(grid, {}).get("timing_calls", [])
            own = entry.get("timing_calls") or [{"command": entry["command"], "timings": entry["timings"]}]
            data["grids"][grid] = {**entry, "timing_calls": calls + [c for c in own if c not in calls]}
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge:
        merge(args.merge, Path(args.results))
        return 0
    if args.cache_timing is not None:
        return run_cache_timing(args)
    if not args.grid:
        raise SystemExit("knowledge_effect.py: --grid NAME is required")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from fact_recall import recall_table
    from kadapt.runs.compare import compare
    from kadapt.runs.recipe import load_recipe

    recipes = [load_recipe(str(RECIPES / TASKS[t][0]), TASKS[t][1] + args.task_set) for t in args.tasks if t in TASKS]
    sources = plugin_sources(args)
    out = Path(args.out or f"runs/knowledge-effect/{args.grid}")
    probe = {}
    if "trex" in args.tasks:
        from fact_recall import build_heldout_sentences, heldout_sentences_recipe

        infuse = next(s.recipe for s in sources if s.recipe is not None)
        build_heldout_sentences(infuse, out / "trex-data")
        recipes.append(heldout_sentences_recipe(out / "trex-data", infuse.backbone.name_or_path, args.task_set))
    if "recall" in args.tasks:
        from fact_recall import build_probe, probe_recipes

        infuse = next(s.recipe for s in sources if s.recipe is not None)
        probe = build_probe(infuse, out / "recall-data")
        recipes += probe_recipes(out / "recall-data", infuse.backbone.name_or_path, args.task_set)
    started = time.perf_counter()
    result = compare(recipes, sources, head_seeds=args.head_seeds, infusion_seeds=args.infusion_seeds, out=out,
                     resume=args.resume or out.exists(), stack_lower=args.stack_lower_layers)
    timings = json.loads((out / "timings.json").read_text(encoding="utf-8"))
    results_path = Path(args.results)
    data = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {"grids": {}}
    data["written_by"] = "benchmarks/knowledge_effect.py"
    data["grids"][args.grid] = {
        "note": args.note, "command": "python benchmarks/knowledge_effect.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "meta": result.results["meta"], "summary": result.results["summary"],
        "infusion_dev": _infusion_dev(out), "timings": timings,
        **({"fact_recall": {"data": probe, "table": recall_table(result.results["rows"])}} if probe else {}),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
        "threads": args.threads, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(result.table)
    print(f"written: {results_path} (grid {args.grid!r}), {out}/compare.json")
    return 0


def plugin_sources(args) -> list:
    """``--plugins`` as compare sources; an infuse recipe is read with the ``--infuse-set`` overrides."""
    from kadapt.runs.compare import PluginSource, plugin_source
    from kadapt.runs.recipe import load_recipe

    sources = []
    for text in args.plugins:
        source = plugin_source(text)
        if source.recipe is not None:
            source = PluginSource(source.name, recipe=load_recipe(text.rpartition("=")[2], args.infuse_set))
        sources.append(source)
    return sources


def run_cache_timing(args) -> int:
    """One infusion three ways (no cache; cache built from an empty folder; cache hit), each timed as a whole
    ``infuse`` call in this process; the dev metrics show the three train the same plug-in."""
    import torch

    from kadapt.runs.infuse import infuse

    torch.set_num_threads(args.threads)
    recipes = [source.recipe for source in plugin_sources(args) if source.recipe is not None]
    if not recipes:
        raise SystemExit("knowledge_effect.py: --cache-timing needs an infuse recipe in --plugins")
    out = Path(args.out or "runs/knowledge-effect/cache-timing")
    cache_dir = out / "hidden-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # a cache left by an earlier call would count under "no cache"
    modes = {}
    for mode, cache in (("no cache", False), ("cache built from empty", True), ("cache hit", True)):
        recipe = copy.deepcopy(recipes[0])
        recipe.training.seed, recipe.training.cache, recipe.output.zoo = args.cache_timing, cache, None
        recipe.training.cache_dir = str(cache_dir)
        if mode == "cache built from empty":
            shutil.rmtree(cache_dir, ignore_errors=True)
        run_dir = out / mode.replace(" ", "-")
        started = time.perf_counter()
        infuse(recipe, out=run_dir, overwrite=True)
        modes[mode] = {"wall_seconds": round(time.perf_counter() - started, 1), "dev": _last_dev(run_dir / "metrics.jsonl"),
                       "cache_bytes_on_disk": sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file())}
    results_path = Path(args.results)
    data = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {"grids": {}}
    data["cache_timing"] = {
        "command": "python benchmarks/knowledge_effect.py " + " ".join(sys.argv[1:]), "recipe": recipes[0].source,
        "overrides": args.infuse_set, "seed": args.cache_timing, "epochs": recipes[0].training.epochs, "modes": modes,
        "threads": args.threads, "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(modes, indent=2))
    return 0


def _last_dev(log: Path) -> dict:
    dev = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if '"dev"' in line]
    return {k: v for k, v in dev[-1].items() if isinstance(v, float)} if dev else {}


def _infusion_dev(out: Path) -> dict:
    """Each infusion's final dev metrics (its run folder's metrics.jsonl), by plug-in and seed."""
    from kadapt.store.plugin_dir import config_file, has_plugin_config

    found = {}
    for log in sorted((out / "infusions").glob("*/seed-*/metrics.jsonl")):
        entry = _last_dev(log)
        if entry:
            if has_plugin_config(log.parent / "plugin"):  # the run's wall time: recipe copy written first, plug-in last
                done = config_file(log.parent / "plugin", note=False)
                entry["wall_seconds"] = round(done.stat().st_mtime - (log.parent / "recipe.yaml").stat().st_mtime, 1)
            found[f"{log.parent.parent.name}/{log.parent.name}"] = entry
    return found


if __name__ == "__main__":
    sys.exit(main())
