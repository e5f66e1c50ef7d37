"""JAKET entity context memory vs on-the-fly LM1 encoding: time per pre-training step, one run.

Both variants run the same pre-training step (WN18RR triples, MiniLM, 2-hop sampling with 10
neighbours per hop, GAT + merge + LM2 forward/backward + the three losses); they differ only in
where E^(0) of the sampled entities comes from: a row lookup in the memory, or LM1 encoding every
sampled entity's description in that step (what the memory replaces; the paper: ~15x faster
pre-training). Steps alternate between the variants on the same batches; medians are reported.

Run:  OMP_WAIT_POLICY=PASSIVE nice -n 10 python benchmarks/jaket_memory_speed.py --batch-size 8 32 \
          --out benchmarks/results/jaket_memory_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def measure(args, batch_size: int, backbone, graph, plugin, entities, relations) -> dict:
    """Median seconds of one pre-training step with E^(0) from the memory vs from LM1 on the fly."""
    from kadapt.data.encoding import collate
    from kadapt.plugins.jaket.memory import EntityMemory, encode_descriptions
    from kadapt.plugins.jaket.pretraining import JaketPretrainingModel
    from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective

    torch.manual_seed(0)
    memory = EntityMemory(entities, relations)
    head = JaketPretrainingObjective(backbone.spec.hidden_size, num_categories=len(graph.category_labels()),
                           num_relations=graph.num_relations,
                           names={"entities": graph.entity_names, "relations": graph.relation_names})
    model = JaketPretrainingModel(backbone, plugin, head, graph, memory, seed=0, category_labels=graph.category_labels())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    texts = graph.entity_texts()
    on_the_fly_entities: list[int] = []
    original_knowledge = plugin.knowledge

    def knowledge_on_the_fly(entity_memory, relation_memory, subgraph):
        """E^(0) from LM1 over the sampled entities' descriptions, computed in this step."""
        nodes = subgraph.nodes.tolist()
        on_the_fly_entities.append(len(nodes))
        fresh = torch.zeros_like(entity_memory)
        fresh[subgraph.nodes] = encode_descriptions(backbone, [texts[i] for i in nodes], plugin.lm1_layer,
                                                    max_length=args.description_length)
        return original_knowledge(fresh, relation_memory, subgraph)

    order = torch.randperm(graph.num_triples, generator=torch.Generator().manual_seed(0)).tolist()
    batches = [collate([head.encode(tuple(graph.triples[i].tolist()), backbone.tokenizer, 48)
                        for i in order[k * batch_size:(k + 1) * batch_size]], backbone.tokenizer.pad_token_id)
               for k in range(args.repeats)]
    times: dict[str, list[float]] = {"memory": [], "on_the_fly": []}
    model.train()
    model(batches[0]).loss.backward()  # warm-up
    for batch in batches:
        for variant in ("memory", "on_the_fly"):
            plugin.knowledge = knowledge_on_the_fly if variant == "on_the_fly" else original_knowledge
            steps_before = int(memory.steps)
            started = time.perf_counter()
            loss = model(batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[variant].append(time.perf_counter() - started)
            memory.steps.fill_(steps_before)  # both variants draw the same sample for this batch
    plugin.knowledge = original_knowledge
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"triples_per_step": batch_size, "seconds_per_step_median": med, "seconds_per_step": times,
            "speedup_memory_vs_on_the_fly": med["on_the_fly"] / med["memory"],
            "entities_encoded_per_step_on_the_fly": on_the_fly_entities}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kg", default=None)
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--memory", default=None, help="memory_full.safetensors from jaket_entity_classification.py "
                                                       "(default: encode the descriptions now, timed)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8], help="triples per step (one or more)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--description-length", type=int, default=32)
    parser.add_argument("--out", default=None, help="results JSON (benchmarks/results/jaket_memory_speed.json)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.family import build_plugin
    from kadapt.core.fileio import load_tensors
    from kadapt.kg import read_kg
    from kadapt.plugins.jaket.pretraining import encode_graph
    from kadapt.runs.recipe import default_data_dir, minilm_path

    backbone = FrozenBackbone.from_pretrained(args.backbone or minilm_path())
    graph = read_kg(args.kg or default_data_dir() / "kg_wn18rr")
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"description_max_length": args.description_length}, backbone.spec)
    encode_seconds = None
    if args.memory:
        tensors, _ = load_tensors(args.memory)
        entities, relations = tensors["entities"], tensors["relations"]
    else:
        started = time.perf_counter()
        entities, relations = encode_graph(backbone, graph, plugin)
        encode_seconds = round(time.perf_counter() - started, 1)
    runs = [measure(args, size, backbone, graph, plugin, entities, relations) for size in args.batch_size]
    report = {"memory_encoding": {"entities": graph.num_entities, "wall_seconds": encode_seconds,
                                  "source": args.memory or "encoded in this run"},
              "runs": runs}
    print(json.dumps([{k: r[k] for k in ("triples_per_step", "seconds_per_step_median", "speedup_memory_vs_on_the_fly")}
                      for r in runs], indent=2))
    if args.out:
        from artifact import write_results

        write_results(args.out, report, "benchmarks/jaket_memory_speed.py",
                      {"fanouts": list(plugin.config.fanouts), "description_max_length": args.description_length,
                       "repeats": args.repeats, "threads": args.threads, "backbone": backbone.name, "kg": graph.source})


if __name__ == "__main__":
    main()
