"""Memory saved and time cost of ``training.gradient_checkpointing`` (CPU: peak RSS; one torch thread).

Three passes that build an autograd graph through backbone layers, each with the switch off and on:

* ``backbone_full`` — ``finetune.backbone: full``: the tuned backbone's whole-model forward + backward
  (transformers' gradient checkpointing through ``TunedBackbone.set_gradient_checkpointing``);
* ``jaket_lm2`` — JAKET's LM2 re-entry: ``Backbone.run_layers`` from the middle layer to the last with
  autograd (the call the JAKET plug-in makes after merging knowledge into the LM1 state);
* ``trelm_attribution`` — TRELM's integrated gradients with m = 20 scaled copies of the batch in one pass
  (``kadapt.plugins.trelm.attribution.integrated_gradients`` over ``run_layers``).

Every (pass, switch) runs in a FRESH process (peak RSS is a per-process high-water mark): it builds a
BERT from a config (no download; MiniLM-L6 sizes by default), runs one warm-up pass without autograd,
reads the peak RSS, then times ``--repeats`` passes with autograd and reads the peak again; the
difference is the memory the autograd pass needed beyond the model. Time is process CPU time (one
thread), robust to other load on the machine. Gradients are checked equal.

    PYTHONPATH=. python benchmarks/gradient_checkpointing.py --out benchmarks/results/gradient_checkpointing.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = ("backbone_full", "jaket_lm2", "trelm_attribution")
SIZES = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _backbone(full: bool):
    import torch
    from transformers import BertConfig, BertModel

    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.tuned_backbone import TunedBackbone

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **SIZES)
    base = FrozenBackbone(BertModel(config, add_pooling_layer=False), None, name="bert-from-config")
    if not full:
        return base
    tuned = TunedBackbone(base, "full", copy_weights=False)
    tuned.model.train()
    return tuned


def autograd_pass(case: str, backbone, ids, mask):
    """One autograd pass of ``case``; returns a gradient to compare between the switch settings."""
    import torch

    layers = backbone.spec.num_layers
    if case == "backbone_full":
        states = backbone.encode(ids, mask, [layers])
        states[layers].float().pow(2).mean().backward()
        grad = backbone.model.encoder.layer[0].attention.self.query.weight.grad.clone()
        backbone.model.zero_grad(set_to_none=True)
        return grad
    if case == "jaket_lm2":
        with torch.no_grad():
            start = backbone.encode(ids, mask, [layers // 2])[layers // 2]
        start = start.clone().requires_grad_(True)
        out = backbone.run_layers(start, layers // 2, layers, mask)
        out.pow(2).mean().backward()
        return start.grad
    from kadapt.plugins.trelm.attribution import integrated_gradients

    target = torch.zeros_like(mask)
    target[:, 1:4] = 1
    scores = integrated_gradients(backbone, {"input_ids": ids, "attention_mask": mask}, target,
                                  lambda hidden, batch: hidden[:, 0].float().sum(-1).sigmoid(), steps=20,
                                  layers=[0, layers // 2])
    return torch.cat(scores)


def measure_one(case: str, on: bool, batch: int, length: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(1)
    backbone = _backbone(case == "backbone_full")
    backbone.set_gradient_checkpointing(on)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (batch, length), generator=gen)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        backbone.model(input_ids=ids, attention_mask=mask)  # warm-up: the no-grad peak is the baseline
    base = _peak_mb()
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        grad = autograd_pass(case, backbone, ids, mask)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"baseline_peak_rss_mb": round(base, 1), "peak_rss_mb": round(_peak_mb(), 1),
            "autograd_extra_rss_mb": round(_peak_mb() - base, 1), "cpu_seconds_per_pass": round(min(cpu), 3),
            "wall_seconds_per_pass": round(min(wall), 3), "grad_abs_sum": float(grad.double().abs().sum())}


def run(args) -> dict:
    load_before = os.getloadavg()[0]
    results = {}
    for case in CASES:
        batch = args.attribution_batch if case == "trelm_attribution" else args.batch
        row = {"batch": batch, "sequences_per_pass": batch * (20 if case == "trelm_attribution" else 1)}
        for on in (False, True):
            cmd = [sys.executable, __file__, "--one", case, "--on" if on else "--off", "--batch", str(batch),
                   "--length", str(args.length), "--repeats", str(args.repeats)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            row["on" if on else "off"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(case, "on" if on else "off", row["on" if on else "off"], flush=True)
        off, on_ = row["off"], row["on"]
        row["memory_saved_fraction"] = round(1 - on_["autograd_extra_rss_mb"] / off["autograd_extra_rss_mb"], 3)
        row["cpu_time_ratio"] = round(on_["cpu_seconds_per_pass"] / off["cpu_seconds_per_pass"], 3)
        row["same_gradients"] = off.pop("grad_abs_sum") == on_.pop("grad_abs_sum")
        results[case] = row
    return {"written_by": "benchmarks/gradient_checkpointing.py", "device": "cpu", "torch_threads": 1,
            "machine": platform.processor() or platform.machine(), "model": {"type": "bert", **SIZES},
            "sequence_length": args.length, "repeats": args.repeats, "cpu_cores": os.cpu_count(),
            "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "note": "peak RSS high-water mark of a fresh process; extra = after the autograd passes minus after a "
                    "no-grad warm-up pass; time = process CPU seconds (one thread), fastest of the repeats (wall "
                    "time is recorded too but depends on the load of the shared machine)", "results": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/gradient_checkpointing.json")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--attribution-batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", choices=CASES)
    parser.add_argument("--on", dest="on", action="store_true")
    parser.add_argument("--off", dest="on", action="store_false")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.on, args.batch, args.length, args.repeats)))
        return 0
    data = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(data["results"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
