"""JAKET Table 3 at small scale: entity classification on an unseen WN18RR part, MiniLM backbone.

WN18RR's entities are split in two halves by a seeded permutation. JAKET is infused on the graph
induced by half A (entity category + relation prediction + masked entity prediction); entity
classification (WordNet supersense, 45 classes) runs on the graph induced by half B, which infusion
never saw: its memory is LM1 over B's descriptions. Labelled B entities are split 20/20/60; the
training part is also cut to 20% and 5%. Each classification run trains through the project's one
training loop (kadapt.runs.loop.train); its metrics.jsonl and curves.png land in
<out>/classification/seed<S>-<P>pct-<row>/. Rows:

* LM1 (descriptions only): linear classifier over the memory (the paper's "RoBERTa" row);
* GNN, random features:   composition GAT over random entity/relation vectors (the "GNN" row);
* LM1+GNN+M, untrained:   GAT (random init) over the memory (the "RoBERTa+GNN+M" row);
* JAKET:                  GAT from the infused plug-in over the memory (fine-tuned like the others).

Run:  OMP_WAIT_POLICY=PASSIVE nice -n 10 python benchmarks/jaket_entity_classification.py --out runs/jaket_table
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path

import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
log = logging.getLogger("jaket_table")
FULL_ONLY = ("LM1 (descriptions only)", "GNN, random features")


def slug(name: str) -> str:
    """A row name as a folder name: ``LM1+GNN+M, untrained`` -> ``lm1-gnn-m-untrained``."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kg", default=None, help="KG-BERT folder with entity2category.tsv (default: WN18RR)")
    parser.add_argument("--backbone", default=None, help="encoder folder (default: MiniLM)")
    parser.add_argument("--out", default="runs/jaket_table")
    parser.add_argument("--infusion-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300, help="entity-classification training steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="entities per entity-classification step")
    parser.add_argument("--all-rows-at-every-size", action="store_true",
                        help="also run the description-only and random-feature rows at 20%% and 5%% (the paper: 100%% only)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--fractions", type=float, nargs="*", default=[1.0, 0.2, 0.05])
    parser.add_argument("--description-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.fileio import atomic_write_json, load_tensors, save_tensors
    from kadapt.kg import read_kg
    from kadapt.core.family import build_plugin
    from kadapt.plugins.jaket.entity_classifier import (
        split_entities,
        train_entity_classifier,
    )
    from kadapt.plugins.jaket.gat import CompositionGAT
    from kadapt.plugins.jaket.memory import EntityMemory
    from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective
    from kadapt.plugins.jaket.pretraining import JaketPretrainingModel, encode_graph
    from kadapt.runs.recipe import default_data_dir, minilm_path
    from kadapt.runs.loop import TrainConfig, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = FrozenBackbone.from_pretrained(args.backbone or minilm_path())
    graph = read_kg(args.kg or default_data_dir() / "kg_wn18rr")
    labels_all = graph.category_labels()
    plugin = build_plugin("jaket", {"description_max_length": args.description_length}, backbone.spec)
    timings = {}

    cache = out / "memory_full.safetensors"
    started = time.perf_counter()
    if cache.exists():
        tensors, _ = load_tensors(cache)
        entities, relations = tensors["entities"], tensors["relations"]
    else:
        entities, relations = encode_graph(backbone, graph, plugin)
        save_tensors(cache, {"entities": entities, "relations": relations})
    timings["memory_seconds"] = round(time.perf_counter() - started, 1)
    log.info("memory of %d entities ready (%.0f s)", graph.num_entities, timings["memory_seconds"])

    half = torch.zeros(graph.num_entities, dtype=torch.bool)
    half[torch.randperm(graph.num_entities, generator=torch.Generator().manual_seed(1234))[: graph.num_entities // 2]] = True
    graph_a, graph_b = graph.subgraph(half, "WN18RR half A"), graph.subgraph(~half, "WN18RR half B")
    rows_a, rows_b = torch.nonzero(half).flatten(), torch.nonzero(~half).flatten()

    # ---- JAKET infusion on half A
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"description_max_length": args.description_length}, backbone.spec)
    memory_a = EntityMemory(entities[rows_a], relations)
    head = JaketPretrainingObjective(backbone.spec.hidden_size, num_categories=len(labels_all), num_relations=graph.num_relations,
                           names={"entities": graph_a.entity_names, "relations": graph_a.relation_names})
    model = JaketPretrainingModel(backbone, plugin, head, graph_a, memory_a, seed=0, category_labels=labels_all)
    triples = graph_a.triples[torch.randperm(graph_a.num_triples, generator=torch.Generator().manual_seed(0))].tolist()
    examples = [head.encode(tuple(t), backbone.tokenizer, 48) for t in triples]
    dev_examples, train_examples = examples[:256], examples[256:]
    started = time.perf_counter()
    result = train(model, train_examples, dev_examples,
                   TrainConfig(batch_size=32, lr=1e-3, max_steps=args.infusion_steps, eval_every=args.infusion_steps // 3,
                               log_every=20, seed=0, cpu=True, mixed_precision="no"),
                   out / "infusion", pad_id=backbone.tokenizer.pad_token_id)
    timings["infusion_seconds"] = round(time.perf_counter() - started, 1)
    infusion_dev = result.dev_history
    log.info("infusion done: %s", infusion_dev[-1] if infusion_dev else {})

    # ---- entity classification on the unseen half B
    labels_b = graph_b.category_tensor(labels_all)
    feats_b = entities[rows_b]
    gen = torch.Generator().manual_seed(99)
    random_feats = torch.randn(feats_b.shape, generator=gen)
    random_rels = torch.randn(relations.shape, generator=gen)
    hidden = backbone.spec.hidden_size

    def fresh_gat(seed: int) -> CompositionGAT:
        torch.manual_seed(seed)
        return CompositionGAT(hidden, 2, 8)

    rows = {
        "LM1 (descriptions only)": lambda s: (feats_b, relations, None),
        "GNN, random features": lambda s: (random_feats, random_rels, fresh_gat(s)),
        "LM1+GNN+M, untrained": lambda s: (feats_b, relations, fresh_gat(s)),
        "JAKET (infused)": lambda s: (feats_b, relations, plugin.gat),
    }
    results: dict[str, dict[str, list[float]]] = {name: {} for name in rows}
    started = time.perf_counter()
    for seed in args.seeds:
        for fraction in args.fractions:
            split = split_entities(labels_b, train_fraction=fraction, seed=seed)
            for name, make in rows.items():
                if fraction != 1.0 and name in FULL_ONLY and not args.all_rows_at_every_size:
                    continue
                feats, rels, gat = make(seed)
                t0 = time.perf_counter()
                run_dir = out / "classification" / f"seed{seed}-{100 * fraction:g}pct-{slug(name)}"
                res = train_entity_classifier(graph_b, feats, rels, labels_b, split, gat, steps=args.steps,
                                              batch_size=args.batch_size, seed=seed, run_dir=run_dir)
                results[name].setdefault(str(fraction), []).append(res["test_accuracy"])
                log.info("seed %d  %4.0f%%  %-26s test %.4f dev %.4f (best step %d, %d train entities, %.0f s)",
                             seed, 100 * fraction, name, res["test_accuracy"], res["dev_accuracy"], res["best_step"],
                             res["train_entities"], time.perf_counter() - t0)
                atomic_write_json(out / "results.json", {"results": results, "timings": timings,
                                                          "infusion_dev": infusion_dev})
    timings["classification_seconds"] = round(time.perf_counter() - started, 1)

    header = "| model | " + " | ".join(f"{100 * f:.0f}%" for f in args.fractions) + " |"
    lines = [header, "|---|" + "---|" * len(args.fractions)]
    for name, by_fraction in results.items():
        cells = []
        for f in args.fractions:
            values = by_fraction.get(str(f), [])
            if not values:
                cells.append("-")
                continue
            cells.append(f"{100 * statistics.mean(values):.1f}" + (f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    summary = {"table": table, "results": results, "timings": timings, "infusion_dev": infusion_dev,
               "graph_a": {"entities": graph_a.num_entities, "triples": graph_a.num_triples},
               "graph_b": {"entities": graph_b.num_entities, "triples": graph_b.num_triples,
                           "labelled": int((labels_b >= 0).sum())},
               "args": vars(args)}
    atomic_write_json(out / "results.json", summary)


if __name__ == "__main__":
    main()
