#!/usr/bin/env python
"""Knowledge-effect benchmark: what do infused plug-ins buy on downstream tasks? (K-Adapter Tables 2-4
layout, on CPU: MiniLM backbone, real data.)

1. **Plug-ins.** A factual (F) and a linguistic (L) K-Adapter are infused ONCE (seed 42) by
   ``benchmarks/real_data_infusion.py --models infuse`` (a subprocess): F on LAMA T-REx evidence
   sentences (relation classification) at that script's full size; L on UD English EWT (dependency
   heads) with 2,000 sentences x 3 epochs instead of 6,000 x 5 (``--ud-train``/``--ud-epochs``), to fit
   the time budget. They are cached in ``OUT/infuse`` and reused by later runs.
2. **Tasks**, each through kadapt's readers and task heads (``objective.encode`` / ``forward`` /
   ``count`` / ``summarize``):
   - Open Entity (crowd split, 9 general types; official train/dev/test): ``entity_typing``, P / R / micro-F1;
   - SemEval-2010 Task 8 (train file only: a seeded dev/test carved out of it): ``relation_semeval``,
     official macro-F1;
   - FewRel 5-way 1-shot (``val_wiki.json``: 8 relations for training episodes, 8 held-out relations for
     dev/test episodes): ``fewshot_pair`` (PAIR), accuracy.
3. **Variants**: bare backbone, +F, +L, +F+L, and +R: an adapter of F's configuration, freshly
   initialised and never infused (K-Adapter's "w/o knowledge" control: extra features that read the
   backbone's lower layers, but no infused knowledge); each task head is trained with 3 seeds (the same data
   split; the seed sets head init, dropout and data order), the epoch is chosen on dev, test is reported.

Backbone and plug-ins are frozen while the heads train, so the features ``[backbone_last ; F ; L]``
are a pure function of the input. They are computed ONCE per example by ``KnowledgeModel.features``
(one backbone pass feeding both plug-ins), and only the positions a head reads (keys ``*_pos``) are
kept; the four variants are column slices of the same features. Training a head on them is what
``kadapt finetune`` computes with frozen plug-ins (the head's dropout is the only randomness), without
re-running the backbone every epoch (DESIGN §8).

    python benchmarks/knowledge_effect.py --quick     # smoke run (small subsets, quick plug-ins)
    python benchmarks/knowledge_effect.py             # full run (see benchmarks/README.md)

Output (``--out``, default ``runs/knowledge-effect``): ``results.json``, ``results.md``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {"bare": (), "+F": ("F",), "+L": ("L",), "+F+L": ("F", "L"),  # variant -> plug-ins used
            "+R": ("R",)}  # R: the same adapter, freshly initialised, never infused (the "w/o knowledge" control)
PLUGIN_NAMES = ("F", "L", "R")
SIZES = {
    "quick": {"semeval": (200, 100, 200), "open_entity": (200, 100, 200), "fewrel": (40, 20, 40),
              "epochs": 5, "seeds": [42, 7]},
    "full": {"semeval": (2000, 400, 1000), "open_entity": (None, 400, 1000), "fewrel": (300, 100, 300),
             "epochs": 10, "seeds": [42, 7, 1]},
}
TASKS = {
    # name: (objective, lr, max_length)
    "open_entity": ("entity_typing", 1e-2, 128),
    "semeval": ("relation_semeval", 1e-2, 128),
    "fewrel": ("fewshot_pair", 1e-3, 160),
}
BATCH = 32
log = logging.getLogger("knowledge-effect")


# ---------------------------------------------------------------------------------------------- plug-ins


def infuse_plugins(out: Path, quick: bool, threads: int, ud_train: int | None, ud_epochs: int | None) -> dict[str, Path]:
    """F and L plug-in folders, infused by real_data_infusion.py once and cached under ``out``."""
    plugin = {"F": out / "runs" / "factual-infuse" / "plugin", "L": out / "runs" / "linguistic-infuse" / "plugin"}
    from kadapt.store.plugin_dir import has_plugin_config

    if all(has_plugin_config(p) for p in plugin.values()):
        log.info("reusing plug-ins in %s", out)
        return plugin
    cmd = [sys.executable, str(HERE / "real_data_infusion.py"), "--models", "infuse", "--out", str(out),
           "--seed", "42", "--threads", str(threads)] + (["--quick"] if quick else [])
    if ud_train and not quick:
        cmd += ["--ud-train", str(ud_train)]
    if ud_epochs and not quick:
        cmd += ["--ud-epochs", str(ud_epochs)]
    log.info("infusing plug-ins: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return plugin


# ---------------------------------------------------------------------------------------------- data


def _take(records: list, n: int | None) -> list:
    return records if n is None else records[:n]


def task_splits(task: str, data_dir: Path, sizes: dict) -> dict[str, list]:
    from kadapt.data.formats import read_records

    if task == "open_entity":
        root = data_dir / "open_entity" / "crowd"
        n = sizes["open_entity"]
        return {s: _take(read_records("open_entity", root / f"{s}.json"), k) for s, k in zip(("train", "dev", "test"), n)}
    if task == "semeval":
        records = read_records("semeval2010", data_dir / "semeval2010_task8" / "TRAIN_FILE.TXT")
        random.Random(0).shuffle(records)  # a fixed split; the seeds vary the heads only
        n_train, n_dev, n_test = sizes["semeval"]
        test, dev, train = records[:n_test], records[n_test:n_test + n_dev], records[n_test + n_dev:]
        return {"train": _take(train, n_train), "dev": dev, "test": test}
    if task == "fewrel":
        return {s: read_records("fewrel", data_dir / "fewrel" / "val_wiki.json") for s in ("train", "dev", "test")}
    raise ValueError(task)


def fewrel_config(sizes: dict) -> dict:
    train, dev, test = sizes["fewrel"]
    return {"n_way": 5, "k_shot": 1, "train_episodes": train, "dev_episodes": dev, "eval_episodes": test,
            "holdout_relations": 8}


# ---------------------------------------------------------------------------------------------- features


def gather_positions(features, batch: dict) -> tuple:
    """Keep only the features at the ``*_pos`` keys: (B, P, F) or, for grouped inputs, (B, G, P, F);
    the position keys are rewritten to index the kept slots."""
    import torch

    keys = sorted(k for k in batch if k.endswith("_pos"))
    rewritten = {}
    if features.dim() == 3:
        rows = torch.arange(features.shape[0])
        kept = torch.stack([features[rows, batch[k]] for k in keys], dim=1)
    else:
        kept = torch.stack([features.gather(2, batch[k][..., None, None].expand(-1, -1, 1, features.shape[-1])).squeeze(2)
                            for k in keys], dim=2)
    for i, k in enumerate(keys):
        rewritten[k] = torch.full_like(batch[k], i)
    return kept, rewritten


def extract(model, head, records: list, max_length: int, split: str) -> dict:
    """Encode ``records`` with ``head`` and compute their kept features once (eval mode, no grad)."""
    import torch

    from kadapt.data.encoding import collate
    from kadapt.data.policy import ErrorPolicy
    from kadapt.runs.context import encode_records

    tok = model.backbone.tokenizer
    policy = ErrorPolicy("skip")
    encoded, _ = encode_records(head, records, tok, max_length, policy, split)

    def length(f: dict) -> int:
        ids = f["input_ids"]
        return max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)

    order = sorted(range(len(encoded)), key=lambda i: length(encoded[i]))  # batches of similar length
    feats, other = [], {}
    model.eval()
    with torch.no_grad():
        for i in range(0, len(encoded), 64):
            batch = collate([encoded[j] for j in order[i:i + 64]], tok.pad_token_id)
            ids, mask = batch["input_ids"], batch["attention_mask"]
            if ids.dim() == 3:
                b, g, s = ids.shape
                full = model.features(ids.reshape(b * g, s), mask.reshape(b * g, s)).reshape(b, g, s, -1)
            else:
                full = model.features(ids, mask)
            kept, rewritten = gather_positions(full, batch)
            feats.append(kept)
            for k, v in batch.items():
                if k in ("input_ids", "attention_mask"):
                    continue
                other.setdefault(k, []).append(rewritten.get(k, v))
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return {"features": torch.cat(feats)[restore], **{k: torch.cat(v)[restore] for k, v in other.items()},
            "skipped": policy.skipped, "examples": len(encoded)}


# ---------------------------------------------------------------------------------------------- heads


def variant_columns(variant: str, hidden: int, sizes: list[int]):
    """Column indices of a variant's features inside ``[backbone ; F ; L]``."""
    import torch

    parts = [torch.arange(hidden)]
    start = hidden
    for name, size in zip(PLUGIN_NAMES, sizes):
        if name in VARIANTS[variant]:
            parts.append(torch.arange(start, start + size))
        start += size
    return torch.cat(parts)


def train_head(objective: str, config: dict, data: dict, columns, seed: int, epochs: int, lr: float) -> dict:
    """Train a fresh head on cached features; pick the epoch by dev main metric; return dev/test metrics."""
    import torch

    from kadapt.core.objective import build_objective
    from kadapt.runs.loop import linear_schedule

    torch.manual_seed(seed)
    head = build_objective(objective, len(columns), config)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    train = data["train"]
    n = train["features"].shape[0]
    steps = epochs * ((n + BATCH - 1) // BATCH)
    scheduler = linear_schedule(optimizer, int(0.06 * steps), steps)
    gen = torch.Generator().manual_seed(seed)

    def rows(split: dict, index) -> tuple:
        batch = {k: v[index] for k, v in split.items() if k not in ("features", "skipped", "examples")}
        return split["features"][index][..., columns], batch

    def evaluate(split: dict) -> dict:
        head.eval()
        counts: dict[str, float] = {}
        with torch.no_grad():
            for i in range(0, split["features"].shape[0], 256):
                feats, batch = rows(split, slice(i, i + 256))
                out = head(feats, batch)
                for k, v in head.count(out.logits, batch).items():
                    counts[k] = counts.get(k, 0.0) + v
        head.train()
        return type(head).summarize(counts)

    best = None
    head.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH):
            feats, batch = rows(train, order[i:i + BATCH])
            loss = head(feats, batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        dev = evaluate(data["dev"])
        if best is None or dev[head.main_metric] > best["dev"][head.main_metric]:
            best = {"epoch": epoch + 1, "dev": dev, "test": evaluate(data["test"])}
    best["main_metric"] = head.main_metric
    return best


# ---------------------------------------------------------------------------------------------- report


def _ms(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


COLUMNS = [("open_entity", "precision", "Open Entity P"), ("open_entity", "recall", "Open Entity R"),
           ("open_entity", "micro_f1", "Open Entity Mi-F1"), ("semeval", "macro_f1", "SemEval-2010 macro-F1"),
           ("fewrel", "accuracy", "FewRel 5-way 1-shot acc")]


def render_markdown(results: dict) -> str:
    seeds = results["meta"]["seeds"]
    cols = [c for c in COLUMNS if c[0] in results["tasks"]]
    lines = [(f"Test metrics in %, mean ± std over {len(seeds)} head seeds ({', '.join(map(str, seeds))}); "
              "epoch chosen on dev per run."), "",
             "| model | " + " | ".join(c[2] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    names = {"bare": "MiniLM (frozen), no plug-in", "+F": "+ factual plug-in (F)", "+L": "+ linguistic plug-in (L)",
             "+F+L": "+ F + L", "+R": "+ un-infused adapter (R, control)"}
    for variant in VARIANTS:
        cells = []
        for task, metric, _ in cols:
            runs = results["tasks"][task]["runs"].get(variant, [])
            cells.append(_ms([r["test"][metric] for r in runs]) if runs else "–")
        lines.append(f"| {names[variant]} | " + " | ".join(cells) + " |")
    lines += ["", "Gain over the bare backbone on the main test metric (points, mean over seeds, paired by seed):", "",
              "| task | " + " | ".join(list(VARIANTS)[1:]) + " |", "|---|" + "---:|" * (len(VARIANTS) - 1)]
    for task, info in results["tasks"].items():
        base = [r["test"][r["main_metric"]] for r in info["runs"]["bare"]]
        cells = []
        for variant in list(VARIANTS)[1:]:
            got = [r["test"][r["main_metric"]] for r in info["runs"].get(variant, [])]
            diffs = [100 * (a - b) for a, b in zip(got, base)]
            cells.append(f"{statistics.mean(diffs):+.1f} (min {min(diffs):+.1f}, max {max(diffs):+.1f})" if diffs else "–")
        lines.append(f"| {task} ({info['main_metric']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/knowledge-effect", help="work and output folder")
    p.add_argument("--quick", action="store_true", help="smoke run: small subsets, quick plug-ins, 2 seeds")
    p.add_argument("--data-dir", default=None, help="data folder (default: $KADAPT_DATA_DIR or ../shared/data)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="head seeds (default: 42 7 1; quick: 42 7)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--ud-train", type=int, default=2000,
                   help="UD sentences for the linguistic infusion (real_data_infusion's full size is 6000)")
    p.add_argument("--ud-epochs", type=int, default=3, help="linguistic infusion epochs (full size: 5)")
    p.add_argument("--plugins", nargs=2, metavar=("FACTUAL", "LINGUISTIC"), default=None,
                   help="use these plug-in folders instead of infusing (or reusing) F and L")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "accelerate", "kadapt.data.policy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from kadapt import FrozenBackbone
    from kadapt.core.model import KnowledgeModel
    from kadapt.core.objective import build_objective, objective_class
    from kadapt.store.plugin_dir import load_plugin
    from kadapt.core.family import build_plugin
    from kadapt.runs.recipe import default_data_dir, minilm_path

    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    seeds = args.seeds or sizes["seeds"]
    epochs = args.epochs or sizes["epochs"]
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if args.plugins:
        plugin_dirs = {"F": Path(args.plugins[0]), "L": Path(args.plugins[1])}
    else:
        plugin_dirs = infuse_plugins(out / ("infuse-quick" if args.quick else "infuse"), args.quick, args.threads,
                                     args.ud_train, args.ud_epochs)
    timings["infuse plug-ins (or reuse)"] = round(time.perf_counter() - t0, 1)
    backbone = FrozenBackbone.from_pretrained(minilm_path())
    plugins = [load_plugin(plugin_dirs[k], backbone).plugin for k in ("F", "L")]
    torch.manual_seed(0)
    plugins.append(build_plugin(plugins[0].kind, {**plugins[0].config.to_dict(), "name": "uninfused"}, backbone.spec))
    for plugin in plugins:
        plugin.requires_grad_(False)
    model = KnowledgeModel(backbone, plugins)
    hidden = backbone.spec.hidden_size
    plugin_sizes = [p.output_size for p in plugins]
    results: dict = {"meta": {"mode": mode, "seeds": seeds, "epochs": epochs, "batch_size": BATCH,
                              "plugins": {k: str(v) for k, v in plugin_dirs.items()}, "sizes": sizes,
                              "command": " ".join(sys.argv), "threads": args.threads,
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
                     "tasks": {}, "timings": timings}

    for task in args.tasks:
        objective, lr, max_length = TASKS[task]
        t0 = time.perf_counter()
        splits = task_splits(task, data_dir, sizes)
        config = fewrel_config(sizes) if task == "fewrel" else {}
        # label inventories etc. completed from the training records (the objective contract's configure)
        config = objective_class(objective).configure(config, splits["train"])
        encoder_head = build_objective(objective, model.feature_size, config)
        data = {}
        for split, records in splits.items():
            units = encoder_head.prepare_records(records, split, 42)
            data[split] = extract(model, encoder_head, units, max_length, f"{task}/{split}")
            log.info("%s/%s: %d examples (%d skipped while encoding)", task, split, data[split]["examples"],
                     data[split]["skipped"])
        timings[f"{task}: read + features"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        info = {"objective": objective, "lr": lr, "max_length": max_length, "config": config,
                "examples": {s: d["examples"] for s, d in data.items()},
                "skipped": {s: d["skipped"] for s, d in data.items()}, "runs": {}}
        for variant in VARIANTS:
            columns = variant_columns(variant, hidden, plugin_sizes)
            for seed in seeds:
                run = train_head(objective, config, data, columns, seed, epochs, lr)
                info["main_metric"] = run["main_metric"]
                info["runs"].setdefault(variant, []).append({"seed": seed, **run})
                log.info("%s %s seed %d: epoch %d dev %.4f test %.4f", task, variant, seed, run["epoch"],
                         run["dev"][run["main_metric"]], run["test"][run["main_metric"]])
        timings[f"{task}: train heads"] = round(time.perf_counter() - t0, 1)
        results["tasks"][task] = info
        _write(out, results, started)
    _write(out, results, started)
    print("\n" + render_markdown(results))
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0


def _write(out: Path, results: dict, started: float) -> None:
    results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    if results["tasks"]:
        (out / "results.md").write_text(render_markdown(results), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
