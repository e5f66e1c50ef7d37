"""JAKET on text, small CPU scale (MiniLM): bare / untrained JAKET / infused JAKET on three tasks, mean and
sample std over seeds, where a seed changes the INFUSION (plug-in init, data order) as well as the head.

    python -m kadapt kg build --lama D/lama --codex D/kg_codex_s --mpararel D/mpararel --out KG
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/jaket_text.py --kg KG --out runs/jaket_text \
        [--seeds 0 1 2] [--tasks rc fewrel ec] [--result benchmarks/results/jaket_text.json]

Per seed s: ``untrained_s<s>`` is a JAKET plug-in built with torch seed s and never infused (same shape);
``infusion_s<s>`` infuses one with ``jaket_pretraining`` (+MLM 0.5) on T-REx sentences whose fact IS a KG
triple, training seed s (recipes/infuse/jaket_text_small.yaml, smaller: ``--infusion-limit`` 2000 sentences,
max_length 64, one epoch). The same three models serve:

* ``rc``: relation classification on T-REx sentences of facts held OUT of the KG (heldout_facts.tsv),
  split by fact 70/30 into train/test (ids kept: JAKET reads the subject/object entities through
  ``plugin_options.jaket``); head seed s.
* ``fewrel``: FewRel 5-way 1-shot (``fewshot_pair``, val_wiki, 8 relations held out for dev/test
  episodes), h/t ids first, the dictionary linker otherwise; linking coverage of the test episodes is
  reported beside the accuracy, and so is the share of FewRel instances whose entity pair is linked by a
  KG triple (their fact may be in the KG). Episode seed s.
* ``ec``: KG entity classification as recipes/finetune/jaket_entity_classification_small.yaml does it
  (LM1 memory + the plug-in's composition GAT, fine-tuned; no LM2) on WN18RR half B (the Table 3 half,
  a KG the plug-ins never saw); ``bare`` = linear classifier over the LM1 memory alone. Split seed s.

Every cell (task, model, seed) writes ``OUT/<task>/<model>_s<seed>.json`` (with the settings it ran
with) when it ends and is skipped when that file exists, so an interrupted run resumes; a cell written
with other settings stops the run. The results file is rewritten after each cell. Processes with
different ``--tasks`` may share one OUT (the infusions are shared; run them one at a time first);
a last run with every task gathers all cells into the results file. Default sizes fit a shared 2-core
CPU (about an hour for everything at 1/4 of a core); they are small, so differences of a few points are
within seed noise -- read the std column.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MODELS = ("bare", "untrained JAKET", "infused JAKET")
TASKS = {"rc": "relation classification, T-REx sentences of facts held out of the KG (test accuracy)",
         "fewrel": "FewRel 5-way 1-shot, val_wiki, 8 held-out relations (test episode accuracy)",
         "ec": "KG entity classification, WN18RR half B (unseen KG), test accuracy at the best dev check"}
log = logging.getLogger("jaket_text")


def data_dir() -> Path:
    from kadapt.core.paths import default_data_dir

    return default_data_dir()


def split_heldout(kg: Path, out: Path, limit: int) -> dict[str, Path]:
    """LAMA-format folders of the held-out facts: train (70% of facts) and test (30%), 2 evidences each,
    ``limit`` train sentences (half as many test ones) spread evenly over the relations."""
    held = {tuple(x.split("\t")) for x in (kg / "heldout_facts.tsv").read_text().splitlines() if x}
    dirs = {name: out / f"rc_{name}" for name in ("train", "test")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    files = sorted((data_dir() / "lama" / "TREx").glob("P*.jsonl.gz"))
    limit = max(2, limit // len(files))  # sentences per relation: every relation gets its share
    for path in files:
        lines, counts = {"train": [], "test": []}, {"train": 0, "test": 0}
        with gzip.open(path, "rt") as fh:
            for line in fh:
                fact = json.loads(line)
                if (fact["sub_uri"], fact["predicate_id"], fact["obj_uri"]) not in held:
                    continue
                name = "test" if hashlib.sha256(line.encode()).digest()[0] < 77 else "train"
                want = limit if name == "train" else limit // 2
                if counts[name] < want:
                    fact["evidences"] = fact["evidences"][:2]
                    lines[name].append(json.dumps(fact))
                    counts[name] += len(fact["evidences"])
        for name, rows in lines.items():
            if rows:
                (dirs[name] / path.name.replace(".gz", "")).write_text("\n".join(rows) + "\n")
    return dirs


# ---------------------------------------------------------------------------------------- models


def kg_memory(args, backbone, out: Path) -> Path:
    """LM1 memory of the text KG (one file: LM1 is frozen, so it is the same for every plug-in)."""
    from kadapt.core.family import build_plugin
    from kadapt.core.fileio import save_tensors
    from kadapt.kg import read_kg
    from kadapt.plugins.jaket.pretraining import build_memory

    memory = out / "kg_memory.safetensors"
    if not memory.exists():
        plugin = build_plugin("jaket", {}, backbone.spec)
        save_tensors(memory, build_memory(backbone, read_kg(args.kg), plugin).to_tensors())
    return memory


def plugin_dirs(args, backbone, out: Path, seed: int) -> dict[str, Path | None]:
    """The three models of seed ``seed``: none, an untrained plug-in, one infused with seed ``seed``."""
    import torch

    from kadapt.core.family import build_plugin
    from kadapt.core.fileio import atomic_write_json, load_tensors
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import recipe_from_dict
    from kadapt.store.plugin_dir import save_plugin

    memory = kg_memory(args, backbone, out)
    untrained = out / f"untrained_s{seed}"
    if not (untrained / "adapter_config.json").exists():
        torch.manual_seed(seed)
        plugin = build_plugin("jaket", {}, backbone.spec)
        save_plugin(plugin, untrained, backbone.fingerprint, memory=load_tensors(memory)[0], overwrite=True)
    infusion = out / f"infusion_s{seed}"
    if not (infusion / "summary.json").exists():
        recipe = recipe_from_dict({
            "kind": "infuse", "name": f"jaket_text_s{seed}", "backbone": {"name_or_path": args.backbone},
            "plugin": {"kind": "jaket", "config": {}},
            "objective": {"name": "jaket_pretraining",
                          "config": {"kg": str(args.kg), "memory": str(memory), "mlm_weight": 0.5}},
            "data": {"format": "lama_trex", "train": str(data_dir() / "lama" / "TREx"), "dev_fraction": 0.05,
                     "max_length": 64, "limit": args.infusion_limit, "on_error": "skip"},
            "training": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "log_every": 20, "seed": seed},
            "output": {"dir": str(infusion)},
        })
        started = time.perf_counter()
        result = infuse(recipe, backbone=backbone, overwrite=True)
        atomic_write_json(infusion / "summary.json", {
            "steps": result.train.global_step, "final_dev": result.train.final_dev,
            "seconds": round(time.perf_counter() - started, 1)})
    return {"bare": None, "untrained JAKET": untrained, "infused JAKET": infusion / "plugin"}


# ---------------------------------------------------------------------------------------- tasks


def _finetune(args, backbone, recipe: dict, plugin: Path | None, out: Path) -> dict:
    from kadapt.runs.finetune import finetune
    from kadapt.runs.recipe import recipe_from_dict

    recipe = {"kind": "finetune", "name": out.name, "backbone": {"name_or_path": args.backbone},
              "output": {"dir": str(out)}, **recipe}
    if plugin is not None:
        recipe["plugins"] = [str(plugin)]
        recipe["plugin_options"] = {"jaket": {"kg": str(args.kg), "memory": str(plugin / "memory.safetensors")}}
    metrics = finetune(recipe_from_dict(recipe), backbone=backbone, overwrite=True).metrics
    return {"test_accuracy": metrics["test"]["accuracy"], "dev_accuracy": metrics.get("dev", {}).get("accuracy"),
            "linking": metrics.get("linking")}


def rc_cell(args, backbone, plugin: Path | None, out: Path, seed: int) -> dict:
    dirs = {name: args.out / f"rc_{name}" for name in ("train", "test")}
    data = {"format": "lama_trex", "train": str(dirs["train"]), "test": str(dirs["test"]), "dev_fraction": 0.1,
            "max_length": 96, "on_error": "skip"}
    return _finetune(args, backbone, {
        "objective": {"name": "relation_classification", "config": {"pooling": "mean"}}, "data": data,
        "training": {"epochs": args.epochs, "batch_size": 16, "lr": 1e-3, "log_every": 20, "seed": seed}}, plugin, out)


def fewrel_cell(args, backbone, plugin: Path | None, out: Path, seed: int) -> dict:
    val = str(data_dir() / "fewrel" / "val_wiki.json")
    episodes = {"n_way": 5, "k_shot": 1, "train_episodes": args.fewrel_train_episodes,
                "dev_episodes": args.fewrel_eval_episodes // 2, "eval_episodes": args.fewrel_eval_episodes,
                "holdout_relations": 8}
    return _finetune(args, backbone, {
        "objective": {"name": "fewshot_pair", "config": episodes},
        "data": {"format": "fewrel", "train": val, "test": val, "dev_fraction": 0.1,
                 "max_length": args.fewrel_max_length, "on_error": "skip"},
        "training": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.06,
                     "log_every": 20, "seed": seed}}, plugin, out)


def ec_graph(args, backbone, out: Path):
    """WN18RR half B (the half the Table 3 benchmark's infusion never saw: the same seeded halving), its
    labels, and its LM1 memory (cached in ``OUT/ec_memory.safetensors``)."""
    import torch

    from kadapt.core.family import build_plugin
    from kadapt.core.fileio import load_tensors, save_tensors
    from kadapt.kg import read_kg
    from kadapt.plugins.jaket.pretraining import encode_graph

    graph = read_kg(data_dir() / "kg_wn18rr")
    half = torch.zeros(graph.num_entities, dtype=torch.bool)
    half[torch.randperm(graph.num_entities, generator=torch.Generator().manual_seed(1234))[: graph.num_entities // 2]] = True
    graph_b = graph.subgraph(~half, "WN18RR half B")
    cache = out / "ec_memory.safetensors"
    if cache.exists():
        tensors = load_tensors(cache)[0]
    else:
        entities, relations = encode_graph(backbone, graph_b, build_plugin("jaket", {}, backbone.spec))
        tensors = {"entities": entities, "relations": relations}
        save_tensors(cache, tensors)
    return graph_b, graph_b.category_tensor(graph.category_labels()), tensors["entities"], tensors["relations"]


_EC_GRAPHS: dict[Path, tuple] = {}  # OUT -> ec_graph(...), built once per process


def ec_cell(args, backbone, plugin: Path | None, out: Path, seed: int, fraction: float) -> dict:
    from kadapt.plugins.jaket.entity_classifier import split_entities, train_entity_classifier
    from kadapt.store.plugin_dir import load_plugin

    if args.out not in _EC_GRAPHS:
        _EC_GRAPHS[args.out] = ec_graph(args, backbone, args.out)
    graph, labels, features, relations = _EC_GRAPHS[args.out]
    gat = load_plugin(plugin, backbone).plugin.gat if plugin is not None else None
    split = split_entities(labels, train_fraction=fraction, seed=seed)
    res = train_entity_classifier(graph, features, relations, labels, split, gat, steps=args.ec_steps,
                                  batch_size=32, seed=seed, run_dir=out)
    return {k: res[k] for k in ("test_accuracy", "dev_accuracy", "best_step", "train_entities")}


# ---------------------------------------------------------------------------------------- driver


def cells(args) -> list[tuple[str, str, str, object]]:
    """(task key, task folder, file stem, runner(backbone, plugin, run_dir, seed)) of every wanted column."""
    out = []
    if "rc" in args.tasks:
        out.append(("rc", "rc", "", lambda b, p, o, s: rc_cell(args, b, p, o, s)))
    if "fewrel" in args.tasks:
        out.append(("fewrel", "fewrel", "", lambda b, p, o, s: fewrel_cell(args, b, p, o, s)))
    for fraction in args.ec_fractions if "ec" in args.tasks else ():
        out.append((f"ec@{fraction:g}", "ec", f"{100 * fraction:g}pct_",
                    lambda b, p, o, s, f=fraction: ec_cell(args, b, p, o, s, f)))
    return out


def summarize(args, runs: dict, infusions: dict, extra: dict) -> dict:
    def stats(values: list[float]) -> dict:
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values)}

    tasks = {}
    for key, by_model in runs.items():
        rows = {model: {**stats([r["test_accuracy"] for r in rs]), "runs": rs} for model, rs in by_model.items() if rs}
        tasks[key] = {"title": TASKS[key.split("@")[0]], "rows": rows}
        if key.split("@")[0] == "ec":
            tasks[key]["train_fraction"] = float(key.split("@")[1])
        coverage = [r["linking"]["test"] for rs in by_model.values() for r in rs if (r.get("linking") or {}).get("test")]
        if coverage:
            tasks[key]["test_coverage"] = {k: statistics.mean(c[k] for c in coverage) for k in ("any_linked", "all_linked")}
    return {"script": "benchmarks/jaket_text.py", "std": "sample (n-1) over seeds", "seeds": args.seeds,
            "settings": {"kg": str(args.kg), "rc_train_sentences_limit": args.limit, "rc_epochs": args.epochs,
                         "infusion_sentences_limit": args.infusion_limit,
                         "fewrel_train_episodes": args.fewrel_train_episodes,
                         "fewrel_eval_episodes": args.fewrel_eval_episodes, "fewrel_max_length": args.fewrel_max_length,
                         "ec_steps": args.ec_steps, "ec_fractions": args.ec_fractions},
            "infusion": infusions, **extra, "tasks": tasks}


def fewrel_kg_overlap(kg: Path) -> dict:
    """Share of FewRel val_wiki instances whose (h, t) pair is joined by a KG triple (either direction)
    and whose exact fact (h, relation, t) is a KG triple."""
    triples = [tuple(x.split("\t")[:3]) for x in (kg / "train.tsv").read_text().splitlines() if x]
    pairs = {(h, t) for h, _, t in triples} | {(t, h) for h, _, t in triples}
    facts = set(triples)
    doc = json.loads((data_dir() / "fewrel" / "val_wiki.json").read_text())
    items = [(rel, inst["h"][1], inst["t"][1]) for rel, insts in doc.items() for inst in insts]
    return {"instances": len(items), "pair_in_kg": sum((h, t) in pairs for _, h, t in items) / len(items),
            "fact_in_kg": sum((h, r, t) in facts for r, h, t in items) / len(items)}


def cell_settings(args, key: str) -> dict:
    """What a cell's number depends on besides task, model and seed (a cached cell must match it)."""
    task = key.split("@")[0]
    own = {"rc": {"limit": args.limit, "epochs": args.epochs},
           "fewrel": {"train_episodes": args.fewrel_train_episodes, "eval_episodes": args.fewrel_eval_episodes,
                      "max_length": args.fewrel_max_length},
           "ec": {"steps": args.ec_steps}}[task]
    return {"infusion_limit": args.infusion_limit, **own}


def checked_cell(path: Path, settings: dict) -> dict:
    """A finished cell's JSON; one written with other settings stops the run (never mixed into a table)."""
    from kadapt.core.errors import KadaptError
    from kadapt.core.fileio import read_json

    row = read_json(path)
    if row.get("settings", settings) != settings:
        raise KadaptError(f"{path}: cell ran with {row['settings']}, this run asks {settings}; "
                          f"use another --out or delete the cell")
    return row


def run(args, backbone) -> dict:
    from kadapt.core.fileio import atomic_write_json, read_json

    if "rc" in args.tasks:
        split_heldout(args.kg, args.out, args.limit)
    extra = {"fewrel_kg_overlap": fewrel_kg_overlap(args.kg)} if "fewrel" in args.tasks else {}
    runs: dict[str, dict[str, list]] = {key: {m: [] for m in MODELS} for key, *_ in cells(args)}
    models, infusions = {}, {}
    for seed in args.seeds:  # every infusion first, then task by task: a partial run has whole columns
        models[seed] = plugin_dirs(args, backbone, args.out, seed)
        infusions[str(seed)] = read_json(args.out / f"infusion_s{seed}" / "summary.json")
    for key, folder, stem, runner in cells(args):
        for seed in args.seeds:
            for model, plugin in models[seed].items():
                name = f"{stem}{model.replace(' ', '_')}_s{seed}"
                done = args.out / folder / f"{name}.json"
                if not done.exists():
                    started = time.perf_counter()
                    row = runner(backbone, plugin, args.out / folder / name, seed)
                    row.update(seed=seed, seconds=round(time.perf_counter() - started, 1), settings=cell_settings(args, key))
                    atomic_write_json(done, row)
                    log.info("%s %s seed %d: test %.4f (%.0f s)", key, model, seed, row["test_accuracy"], row["seconds"])
                runs[key][model].append(checked_cell(done, cell_settings(args, key)))
                if args.result:
                    atomic_write_json(args.result, summarize(args, runs, infusions, extra))
    return summarize(args, runs, infusions, extra)


def main() -> int:
    from kadapt.core.paths import minilm_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kg", type=Path, required=True, help="folder written by `kadapt kg build`")
    ap.add_argument("--out", type=Path, default=Path("runs/jaket_text"))
    ap.add_argument("--backbone", default=None, help="encoder folder (default: MiniLM)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="*", default=["rc", "fewrel", "ec"], choices=["rc", "fewrel", "ec"])
    ap.add_argument("--limit", type=int, default=300, help="RC training sentences")
    ap.add_argument("--epochs", type=int, default=2, help="RC epochs")
    ap.add_argument("--infusion-limit", type=int, default=2000, help="T-REx sentences read by each infusion")
    ap.add_argument("--fewrel-train-episodes", type=int, default=100)
    ap.add_argument("--fewrel-eval-episodes", type=int, default=100)
    ap.add_argument("--fewrel-max-length", type=int, default=96)
    ap.add_argument("--ec-steps", type=int, default=300)
    ap.add_argument("--ec-fractions", type=float, nargs="*", default=[1.0, 0.05])
    ap.add_argument("--result", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from kadapt.core.backbone import FrozenBackbone

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.backbone = args.backbone or minilm_path()
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args, FrozenBackbone.from_pretrained(args.backbone))
    print(json.dumps({k: {m: f"{r['mean']:.3f} ± {r['std']:.3f}" for m, r in t["rows"].items()}
                      for k, t in result["tasks"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
