#!/usr/bin/env python
"""Real-data K-Adapter benchmark on CPU: a real pretrained encoder (MiniLM) + real data.

Two infusion tasks, each compared with a bare-backbone linear probe (same head, backbone features only)
and trivial baselines, everything evaluated on held-out test data:

1. **Factual** -- LAMA T-REx evidence sentences (28 relations) as relation classification with
   ``@``/``#`` markers. Splits are made BY FACT (a fact = one line of a ``P*.jsonl.gz`` file; facts that
   share the same subject/object surface pair are kept together), seeded 80/10/10, after dropping
   identical (sentence, spans) duplicates and sentences whose (sentence, spans) carry two different
   relations. Only sentences that fit ``FACT_MAX_LEN`` tokens with the four markers are kept. Dev/test
   sentences that also occur in an earlier split (with other markers) are dropped too. The splits are
   written as T-REx-rc JSON and read back through kadapt's ``trex_rc`` reader.
2. **Linguistic** -- UD English EWT, dependency head prediction (UAS over first sub-tokens), on the
   official dev and test sets (a seeded subset of train sentences is used for training).

Everything trains through kadapt's public entry points: ``infuse(recipe, backbone=...)`` and
``finetune(recipe, backbone=..., plugins=[...])`` with recipes built by ``recipe_from_dict``.
Hyper-parameters were chosen on DEV only (see benchmarks/README.md); test is evaluated once per model.
The frozen backbone's states are memoised per sequence (``make_cached_backbone``; ``--no-cache`` for the
plain path) and OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``), see README.

    python benchmarks/real_data_infusion.py --quick          # a few minutes
    python benchmarks/real_data_infusion.py                  # default size (well under 30 min on 2 cores)
    python benchmarks/real_data_infusion.py --tune ...       # dev-only runs (no test evaluation)
    python benchmarks/real_data_infusion.py --quick --results benchmarks/results/real_data_infusion_quick.json

Data: ``$KADAPT_DATA_DIR`` (default ``../shared/data`` next to the checkout, or ``--data-dir``).
Output (``--out``, default ``runs/bench-real``): ``results.json``, ``results.md``, the split files and
every run folder (recipe copy, metrics.jsonl, plug-in, predictions).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

from real_data_prep import (FACT_MAX_LEN, UD_MAX_LEN, Timer, attach_baselines, build_trex_splits, build_ud_splits,
                            check_cache, fresh_dir, make_cached_backbone, paired_bootstrap, prf_from_pairs,
                            read_predictions, relation_baselines)

# ---------------------------------------------------------------------------------------------- config

# Sizes per mode. Eval sets take at most one evidence sentence per fact (more facts, fewer near-copies);
# train takes at most ``train_per_fact`` evidences per fact. A split smaller than asked (the full test
# pool holds ~1,750 facts that fit FACT_MAX_LEN) is used whole.
SIZES = {
    "quick": {
        "fact_train": 1500, "fact_dev": 400, "fact_test": 800, "train_per_fact": 2,
        "ud_train": 1000, "ud_dev": 500, "ud_test": 500,
        "fact_epochs": 3, "ud_epochs": 3, "head_epochs": 10,
    },
    "full": {
        "fact_train": 6000, "fact_dev": 1000, "fact_test": 2000, "train_per_fact": 2,
        "ud_train": 6000, "ud_dev": None, "ud_test": None,  # None = the whole official split
        "fact_epochs": 3, "ud_epochs": 5, "head_epochs": 10,
    },
}

# Hyper-parameters (chosen on DEV, see README). MiniLM has 6 layers: adapters read states 0, 2 and 5.
ADAPTER = {"layers": [0, 2, 5], "adapter_size": 128, "num_transformer_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 512, "dropout": 0.1}
BATCH = 32

log = logging.getLogger("bench-real")


# ---------------------------------------------------------------------------------------------- kadapt runs


def recipe(kind: str, name: str, backbone_path: str, objective: str, objective_config: dict, data: dict,
           training: dict, out_dir: Path, plugin: dict | None = None):
    from kadapt.runs.recipe import recipe_from_dict

    spec = {
        "kind": kind, "name": name,
        "backbone": {"name_or_path": backbone_path},
        "objective": {"name": objective, "config": objective_config},
        "data": data, "training": training,
        "output": {"dir": str(out_dir)},
    }
    if plugin is not None:
        spec["plugin"] = plugin
    return recipe_from_dict(spec, source=f"<bench:{name}>")


def evaluate_infused(plugin_dir: Path, backbone, data_format: str, path: Path, max_length: int) -> tuple[dict, list, list]:
    """Metrics of the head trained DURING infusion (saved beside the plug-in) on a data file."""
    from kadapt.core.model import KnowledgeModel
    from kadapt.data.policy import ErrorPolicy
    from kadapt.data.formats import read_records
    from kadapt.core.objective import build_objective
    from kadapt.store.plugin_dir import load_plugin
    from kadapt.runs.context import encode_records
    from kadapt.runs.loop import evaluate_model

    loaded = load_plugin(plugin_dir, backbone)
    objective = loaded.record["objectives"][0]
    model = KnowledgeModel(backbone, [loaded.plugin])
    head = build_objective(objective["name"], model.feature_size, objective["config"])
    prefix = objective["name"] + "."
    head.load_state_dict({k[len(prefix):]: v for k, v in loaded.heads.items() if k.startswith(prefix)}, strict=True)
    model.head = head
    model.eval()
    policy = ErrorPolicy("raise")
    records = read_records(data_format, path, policy)
    encoded, kept = encode_records(head, records, backbone.tokenizer, max_length, policy, str(path))
    metrics, predictions = evaluate_model(model, encoded, BATCH * 2, backbone.tokenizer.pad_token_id,
                                          backbone.device, with_predictions=True)
    return metrics, kept, predictions


def run_factual(args, sizes, backbone, backbone_path, data_dir, out, timer, results):
    from kadapt.runs.finetune import finetune
    from kadapt.runs.infuse import infuse

    split_dir = fresh_dir(out / "data")
    with timer("factual: build T-REx splits"):
        built = build_trex_splits(data_dir / "lama" / "TREx", backbone.tokenizer, sizes, args.seed, split_dir)
    paths, stats = built["paths"], built["stats"]
    results["factual"]["data"] = stats
    log.info("T-REx splits: %s", {k: v for k, v in stats.items() if not k.startswith("label_counts")})
    train_labels = [r.label for r in built["records"]["train"]]
    rows = results["factual"]["rows"]
    rows["majority class"] = {"test": relation_baselines(train_labels, [r.label for r in built["records"]["test"]])["majority"],
                              "dev": relation_baselines(train_labels, [r.label for r in built["records"]["dev"]])["majority"]}
    rows["chance (uniform)"] = {"test": relation_baselines(train_labels, [r.label for r in built["records"]["test"]])["chance"],
                                "dev": relation_baselines(train_labels, [r.label for r in built["records"]["dev"]])["chance"]}

    if args.tune:
        for row in rows.values():
            row.pop("test", None)
    test_path = None if args.tune else str(paths["test"])
    data = {"format": "trex_rc", "train": str(paths["train"]), "dev": str(paths["dev"]), "test": test_path,
            "max_length": FACT_MAX_LEN, "on_error": "raise"}
    common = {"batch_size": BATCH, "weight_decay": 0.01, "warmup_ratio": 0.06, "seed": args.seed, "cpu": True,
              "log_every": 20, "keep_checkpoints": 1}
    epochs, head_epochs = sizes["fact_epochs"], sizes["head_epochs"]
    runs = out / "runs"

    test_pairs: dict[str, tuple[list, list]] = {}  # model -> (gold, predictions) on test, same order

    # (a) bare backbone probe: the same relation head over frozen backbone features only.
    if "probe" in args.models:
        run_dir = fresh_dir(runs / "factual-probe")
        with timer("factual: probe (finetune, no plug-in)"):
            r = recipe("finetune", "factual-probe", backbone_path, "relation_classification", {}, {**data},
                       {**common, "epochs": head_epochs, "lr": args.head_lr}, run_dir)
            res = finetune(r, backbone=backbone, plugins=[], out=run_dir)
        row = {"dev": _rel_dev(res.metrics["dev"]), "train_seconds": res.metrics["train_seconds"],
               "lr": args.head_lr, "epochs": head_epochs,
               "steps": res.metrics["steps"], "trainable_params": _head_params(2 * 384, len(set(train_labels)))}
        if not args.tune:
            test_pairs["probe"] = read_predictions(run_dir / "predictions.jsonl")
            row["test"] = prf_from_pairs(*test_pairs["probe"])
            row["test"]["library_accuracy"] = res.metrics["test"]["accuracy"]
        rows["backbone probe (linear head)"] = row

    # (b) infusion: K-Adapter + relation head trained together; then the infusion head on test.
    plugin_dir = None
    if "infuse" in args.models or "finetune" in args.models:
        run_dir = fresh_dir(runs / "factual-infuse")
        with timer("factual: infuse K-Adapter"):
            r = recipe("infuse", "factual", backbone_path, "relation_classification", {}, {**data, "test": None},
                       {**common, "epochs": epochs, "lr": args.fact_lr}, run_dir,
                       plugin={"kind": "kadapter", "config": {"name": "factual", **ADAPTER}})
            inf = infuse(r, backbone=backbone, out=run_dir)
        plugin_dir = inf.plugin_dir
        row = {"dev": _rel_dev(inf.train.final_dev), "train_seconds": round(inf.train.seconds, 1),
               "lr": args.fact_lr, "epochs": epochs,
               "steps": inf.train.global_step, "dev_history": [_rel_dev(h) for h in inf.train.dev_history],
               "plugin_dir": str(plugin_dir)}
        from kadapt.store.plugin_dir import describe_plugin
        row["trainable_params"] = describe_plugin(plugin_dir)["parameters"] + _head_params(2 * 768, len(set(train_labels)))
        if not args.tune:
            with timer("factual: evaluate infusion head on test"):
                metrics, kept, preds = evaluate_infused(plugin_dir, backbone, "trex_rc", paths["test"], FACT_MAX_LEN)
            test_pairs["infused"] = ([k.label for k in kept], preds)
            (run_dir / "test_predictions.jsonl").write_text(
                "".join(json.dumps({"source": k.source, "gold": k.label, "prediction": p}) + "\n" for k, p in zip(kept, preds)),
                encoding="utf-8")
            row["test"] = prf_from_pairs(*test_pairs["infused"])
            row["test"]["library_accuracy"] = metrics["accuracy"]
        rows["K-Adapter infused (infusion head)"] = row

    # (b') downstream path: a fresh head over [backbone ; frozen factual plug-in] via finetune.
    if "finetune" in args.models and plugin_dir is not None:
        run_dir = fresh_dir(runs / "factual-finetune-with-plugin")
        with timer("factual: finetune fresh head over [backbone; plug-in]"):
            r = recipe("finetune", "factual-with-plugin", backbone_path, "relation_classification", {}, {**data},
                       {**common, "epochs": args.ft_epochs or epochs, "lr": args.head_lr}, run_dir)
            res = finetune(r, backbone=backbone, plugins=[str(plugin_dir)], out=run_dir)
        row = {"dev": _rel_dev(res.metrics["dev"]), "train_seconds": res.metrics["train_seconds"],
               "lr": args.head_lr, "epochs": args.ft_epochs or epochs,
               "steps": res.metrics["steps"], "trainable_params": _head_params(2 * 768, len(set(train_labels)))}
        if not args.tune:
            test_pairs["finetune"] = read_predictions(run_dir / "predictions.jsonl")
            row["test"] = prf_from_pairs(*test_pairs["finetune"])
            row["test"]["library_accuracy"] = res.metrics["test"]["accuracy"]
        rows["K-Adapter plug-in + fresh head (finetune)"] = row

    # Is the gain over the probe more than test-set noise? Paired bootstrap over test examples.
    if "probe" in test_pairs:
        for key, name in (("infused", "K-Adapter infused (infusion head)"),
                          ("finetune", "K-Adapter plug-in + fresh head (finetune)")):
            if key in test_pairs:
                assert test_pairs[key][0] == test_pairs["probe"][0], "test predictions are not aligned"
                rows[name]["test"]["accuracy_gain_vs_probe"] = paired_bootstrap(
                    test_pairs["probe"][0], test_pairs["probe"][1], test_pairs[key][1], seed=args.seed)


def _rel_dev(metrics: dict) -> dict:
    return {"accuracy": metrics.get("accuracy"), "micro_f1": metrics.get("micro_f1")}


def _head_params(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


def run_linguistic(args, sizes, backbone, backbone_path, data_dir, out, timer, results):
    from kadapt.runs.finetune import finetune
    from kadapt.runs.infuse import infuse

    split_dir = out / "data"
    split_dir.mkdir(parents=True, exist_ok=True)
    with timer("linguistic: build EWT subsets"):
        built = build_ud_splits(data_dir / "ud_english_ewt", backbone.tokenizer, sizes, args.seed, split_dir)
    paths = built["paths"]
    results["linguistic"]["data"] = built["stats"]
    rows = results["linguistic"]["rows"]
    dev_base, test_base = attach_baselines(built["records"]["dev"]), attach_baselines(built["records"]["test"])
    rows["attach to previous word"] = {"dev": {"uas": dev_base["left"]}, "test": {"uas": test_base["left"]}}
    rows["attach to next word"] = {"dev": {"uas": dev_base["right"]}, "test": {"uas": test_base["right"]}}
    if args.tune:
        for row in rows.values():
            row.pop("test", None)

    test_path = None if args.tune else str(paths["test"])
    data = {"format": "conllu", "train": str(paths["train"]), "dev": str(paths["dev"]), "test": test_path,
            "max_length": UD_MAX_LEN, "on_error": "raise"}
    objective_config = {"max_length": UD_MAX_LEN}
    common = {"batch_size": BATCH, "weight_decay": 0.01, "warmup_ratio": 0.06, "seed": args.seed, "cpu": True,
              "log_every": 20, "keep_checkpoints": 1}
    epochs, head_epochs = sizes["ud_epochs"], sizes["head_epochs"]
    runs = out / "runs"

    if "probe" in args.models:
        run_dir = fresh_dir(runs / "linguistic-probe")
        with timer("linguistic: probe (finetune, no plug-in)"):
            r = recipe("finetune", "linguistic-probe", backbone_path, "dependency_head", objective_config, data,
                       {**common, "epochs": head_epochs, "lr": args.head_lr}, run_dir)
            res = finetune(r, backbone=backbone, plugins=[], out=run_dir)
        row = {"dev": {"uas": res.metrics["dev"].get("uas")}, "train_seconds": res.metrics["train_seconds"],
               "lr": args.head_lr, "epochs": head_epochs,
               "steps": res.metrics["steps"], "trainable_params": _head_params(384, UD_MAX_LEN)}
        if not args.tune:
            row["test"] = {"uas": res.metrics["test"]["uas"]}
        rows["backbone probe (linear head)"] = row

    if "infuse" in args.models or "finetune" in args.models:
        run_dir = fresh_dir(runs / "linguistic-infuse")
        with timer("linguistic: infuse K-Adapter"):
            r = recipe("infuse", "linguistic", backbone_path, "dependency_head", objective_config, {**data, "test": None},
                       {**common, "epochs": epochs, "lr": args.ling_lr}, run_dir,
                       plugin={"kind": "kadapter", "config": {"name": "linguistic", **ADAPTER}})
            inf = infuse(r, backbone=backbone, out=run_dir)
        from kadapt.store.plugin_dir import describe_plugin
        row = {"dev": {"uas": inf.train.final_dev.get("uas")}, "train_seconds": round(inf.train.seconds, 1),
               "lr": args.ling_lr, "epochs": epochs,
               "steps": inf.train.global_step, "dev_history": [{"uas": h.get("uas")} for h in inf.train.dev_history],
               "plugin_dir": str(inf.plugin_dir),
               "trainable_params": describe_plugin(inf.plugin_dir)["parameters"] + _head_params(768, UD_MAX_LEN)}
        if not args.tune:
            with timer("linguistic: evaluate infusion head on test"):
                metrics, _, _ = evaluate_infused(inf.plugin_dir, backbone, "conllu", paths["test"], UD_MAX_LEN)
            row["test"] = {"uas": metrics["uas"]}
        rows["K-Adapter infused (infusion head)"] = row


# ---------------------------------------------------------------------------------------------- report


def _fmt(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _hp(row: dict) -> str:
    return f"{row['lr']:g} × {row['epochs']}" if "lr" in row else "–"


def render_markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"### Results ({meta['mode']} mode, seed {meta['seed']})", "",
             (f"Backbone: MiniLM-L6 (BERT, 6 layers, hidden 384), frozen; {meta['threads']} CPU threads; "
             f"load average {meta['loadavg_start']} at start, {meta.get('loadavg_end')} at end; "
             f"total wall time {meta.get('total_seconds')} s."), ""]
    fact = results.get("factual")
    if fact and fact.get("rows"):
        d = fact["data"]
        lines += [(f"**Factual — LAMA T-REx relation classification ({d.get('train_relations')} relations)**: "
                  f"train {d.get('train_examples')} sentences / {d.get('train_facts')} facts, dev {d.get('dev_examples')} / "
                  f"{d.get('dev_facts')}, test {d.get('test_examples')} / {d.get('test_facts')} (split by fact; no "
                  "fact and no sentence shared between splits). Metrics in %."), "",
                  "| model | lr × epochs | dev acc | dev micro-F1 | test acc | test micro-F1 | test macro-F1 | train s | trainable params |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, row in fact["rows"].items():
            dev, test = row.get("dev", {}), row.get("test", {})
            lines.append(f"| {name} | {_hp(row)} | {_fmt(dev.get('accuracy'))} | {_fmt(dev.get('micro_f1'))} | "
                         f"{_fmt(test.get('accuracy'))} | {_fmt(test.get('micro_f1'))} | {_fmt(test.get('macro_f1'))} | "
                         f"{row.get('train_seconds', '–')} | {row.get('trainable_params', '–')} |")
        lines.append("")
        for name, row in fact["rows"].items():
            gain = row.get("test", {}).get("accuracy_gain_vs_probe")
            if gain:
                lines.append(f"- {name} vs backbone probe, test accuracy: {gain['points']:+.1f} points "
                             f"(95% paired-bootstrap CI {gain['ci95'][0]:+.1f} .. {gain['ci95'][1]:+.1f}; "
                             f"share of {gain['resamples']} resamples with gain ≤ 0: {gain['p_not_better']:.3f})")
        lines.append("")
    ling = results.get("linguistic")
    if ling and ling.get("rows"):
        d = ling["data"]
        lines += [(f"**Linguistic — UD English EWT dependency head prediction (UAS, %)**: train {d.get('train_sentences')} "
                  f"of {d.get('train_of')} sentences, dev {d.get('dev_sentences')} of {d.get('dev_of')} "
                  f"({d.get('dev_words')} words), test {d.get('test_sentences')} of {d.get('test_of')} ({d.get('test_words')} words)."), "",
                  "| model | lr × epochs | dev UAS | test UAS | train s | trainable params |", "|---|---|---:|---:|---:|---:|"]
        for name, row in ling["rows"].items():
            lines.append(f"| {name} | {_hp(row)} | {_fmt(row.get('dev', {}).get('uas'))} | {_fmt(row.get('test', {}).get('uas'))} | "
                         f"{row.get('train_seconds', '–')} | {row.get('trainable_params', '–')} |")
        lines.append("")
    lines += ["**Time per stage** (wall = elapsed; CPU = process CPU time over all threads)", "",
              "| stage | wall s | CPU s |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['wall_s']} | {v['cpu_s']} |" for k, v in results["timings"].items()]
    total_cpu = round(sum(v["cpu_s"] for v in results["timings"].values()), 1)
    lines.append(f"| **total** | {meta.get('total_seconds')} | {total_cpu} |")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-real", help="output folder (default: runs/bench-real)")
    p.add_argument("--quick", action="store_true", help="small subsets and fewer epochs (a few minutes)")
    p.add_argument("--data-dir", default=None, help="data folder (default: $KADAPT_DATA_DIR or ../shared/data)")
    p.add_argument("--tasks", nargs="+", default=["factual", "linguistic"], choices=["factual", "linguistic"])
    p.add_argument("--models", nargs="+", default=["probe", "infuse", "finetune"], choices=["probe", "infuse", "finetune"],
                   help="probe = bare-backbone head; infuse = K-Adapter infusion; finetune = fresh head over the factual plug-in")
    p.add_argument("--tune", action="store_true", help="dev only: no model or baseline is scored on test (for tuning)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-cache", action="store_true",
                   help="run the frozen backbone on every batch (plain library path) instead of memoising its states")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fact-lr", type=float, default=3e-3, help="factual infusion learning rate (adapter + head)")
    p.add_argument("--ling-lr", type=float, default=3e-3, help="linguistic infusion learning rate (adapter + head)")
    p.add_argument("--head-lr", type=float, default=1e-2,
                   help="learning rate of heads trained over frozen features (probes, fresh head over the plug-in)")
    p.add_argument("--fact-epochs", type=int, default=None, help="override the factual infusion epochs")
    p.add_argument("--ud-epochs", type=int, default=None, help="override the linguistic infusion epochs")
    p.add_argument("--head-epochs", type=int, default=None, help="override the probe epochs")
    p.add_argument("--ft-epochs", type=int, default=None,
                   help="epochs of the fresh head over the factual plug-in (default: the infusion epochs)")
    p.add_argument("--fact-train", type=int, default=None, help="override the factual train size")
    p.add_argument("--ud-train", type=int, default=None, help="override the UD train size (sentences)")
    p.add_argument("--results", default=None,
                   help="also write results.json to this path with the script's name (benchmarks/results/<name>.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "accelerate", "kadapt.data.policy", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Idle OpenMP threads sleep instead of spinning. On a machine shared with other jobs, spinning
    # threads that wait at every barrier for a descheduled sibling made training steps 3-10x slower
    # (measured here: 2-13 s vs 0.75 s per K-Adapter step); on an idle machine it costs nothing.
    # Must be set before torch is imported; an explicit OMP_WAIT_POLICY in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    torch.set_num_threads(args.threads)
    from kadapt import FrozenBackbone
    from kadapt.core.errors import RecipeError
    from kadapt.runs.recipe import default_data_dir, minilm_path

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    needed = {"factual": data_dir / "lama" / "TREx", "linguistic": data_dir / "ud_english_ewt" / "en_ewt-ud-train.conllu"}
    missing = [str(needed[t]) for t in args.tasks if not needed[t].exists()]
    if missing:
        print(f"real_data_infusion: data not found: {', '.join(missing)}\n"
              f"Set KADAPT_DATA_DIR (or --data-dir) to the folder holding lama/TREx and ud_english_ewt.",
              file=sys.stderr)
        return 2
    try:
        backbone_path = minilm_path()
    except RecipeError as err:  # the MiniLM package is not installed: the message says how
        print(f"real_data_infusion: {err}", file=sys.stderr)
        return 2

    mode = "quick" if args.quick else "full"
    sizes = dict(SIZES[mode])
    if args.fact_train:
        sizes["fact_train"] = args.fact_train
    if args.ud_train:
        sizes["ud_train"] = args.ud_train
    for key, value in (("fact_epochs", args.fact_epochs), ("ud_epochs", args.ud_epochs), ("head_epochs", args.head_epochs)):
        if value:
            sizes[key] = value
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    results: dict = {
        "meta": {"mode": mode, "seed": args.seed, "threads": args.threads, "tune_dev_only": args.tune,
                 "backbone": backbone_path, "adapter": ADAPTER, "sizes": sizes, "batch_size": BATCH,
                 "lr": {"factual_infusion": args.fact_lr, "linguistic_infusion": args.ling_lr, "heads": args.head_lr},
                 "max_length": {"factual": FACT_MAX_LEN, "linguistic": UD_MAX_LEN},
                 "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
                 "loadavg_start": [round(x, 2) for x in os.getloadavg()], "command": " ".join(sys.argv)},
        "factual": {"rows": {}}, "linguistic": {"rows": {}}, "timings": timer.stages,
    }
    started = time.perf_counter()
    with timer("load MiniLM backbone"):
        backbone = FrozenBackbone.from_pretrained(backbone_path)
        _ = backbone.fingerprint  # hashed once, reused by every run
    if not args.no_cache:
        plain = backbone
        backbone = make_cached_backbone(plain, ADAPTER["layers"])
        diff = check_cache(plain, backbone, ["Allan Peiper was born in Alexandra , Victoria .",
                                             "The cat sat .", "A somewhat longer sentence to force padding in the batch ."])
        results["meta"]["backbone_cache"] = {"layers": backbone.cache_layers, "check_max_abs_diff": diff}
    else:
        results["meta"]["backbone_cache"] = None
    if "factual" in args.tasks:
        run_factual(args, sizes, backbone, backbone_path, data_dir, out, timer, results)
        _cache_stats(backbone, results, "factual")
        _write(out, results, started)
    if "linguistic" in args.tasks:
        run_linguistic(args, sizes, backbone, backbone_path, data_dir, out, timer, results)
        _cache_stats(backbone, results, "linguistic")
    _write(out, results, started)
    print("\n" + render_markdown(results))
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    if args.results:
        _write_results_file(args.results, results)
    return 0


def _write_results_file(path: str, results: dict) -> None:
    """results.json as benchmarks/results/<name>.json: the run's meta become the settings."""
    from artifact import write_results

    meta = {k: v for k, v in results["meta"].items() if k != "command"}
    write_results(path, {k: v for k, v in results.items() if k != "meta"}, "benchmarks/real_data_infusion.py", meta)


def _cache_stats(backbone, results: dict, task: str) -> None:
    if hasattr(backbone, "store"):
        results["meta"]["backbone_cache"][task] = {"sequences_computed": backbone.misses, "sequences_reused": backbone.hits}
        backbone.clear()
        backbone.hits = backbone.misses = 0


def _write(out: Path, results: dict, started: float) -> None:
    results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    (out / "results.md").write_text(render_markdown(results), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
