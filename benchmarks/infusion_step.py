"""Time one K-Adapter factual infusion step (forward + backward + AdamW) on a random-weight backbone.

Compares, in one run: the reference style (HF forward with all hidden states, as the anchor code
does) vs kadapt's selective pass (only the layers the plug-in reads), each in fp32 and under bf16
autocast, and reports seconds per step, tokens/s, peak memory and the fraction of the device's
measured matmul FLOP/s that a step reaches (model FLOPs ≈ 6 × plug-in params × tokens for the
trainable part + 2 × backbone params × tokens for the frozen forward). ``step_s`` is wall seconds on a
GPU and CPU seconds of the process on the CPU (``--threads``, default 1), where other jobs on a shared
machine would inflate wall time; both are kept.

    python benchmarks/infusion_step.py                 # RoBERTa-large shape, paper batch 128 × 64 (GPU)
    python benchmarks/infusion_step.py --quick         # small shape for CPU
    python benchmarks/infusion_step.py --quick --steps 20 --results benchmarks/results/infusion_step_quick.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective
from kadapt.core.family import build_plugin
from kadapt.testing.tiny import roberta_large_config


def shape(quick: bool):
    config = roberta_large_config()
    if quick:
        config.num_hidden_layers, config.hidden_size, config.num_attention_heads = 6, 256, 4
        config.intermediate_size, config.vocab_size = 1024, 8000
        plugin = {"adapter_size": 192, "num_attention_heads": 4, "intermediate_size": 768}
        return config, plugin, 16, 64
    return config, {}, 128, 64


def matmul_flops(device, dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10
    clock = _clock(device)
    start = clock()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (clock() - start)


def _clock(device):
    """Wall time on a GPU; CPU time of this process on the CPU (other jobs on a shared machine do not inflate it)."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(mode: str, bf16: bool, backbone, plugin, head, batch, steps: int, device) -> dict:
    model = KnowledgeModel(backbone, [plugin], head)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    L = backbone.spec.num_layers

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if mode == "reference":
                with torch.no_grad():
                    out = backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         output_hidden_states=True)
                states = dict(enumerate(out.hidden_states))
                feats = torch.cat([states[L], plugin.adapt(states, batch["attention_mask"])], -1)
                loss = head(feats.float(), batch).loss
            else:
                loss = model(batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync(device)
    wall, cpu = (time.perf_counter() - start) / steps, (time.process_time() - cpu_start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"step_s": wall if device.type == "cuda" else cpu, "wall_step_s": wall, "cpu_step_s": cpu, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--results", help="also write the figures to this JSON (benchmarks/results/<name>.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config, plugin_cfg, batch_size, seq = shape(args.quick)
    from transformers import AutoModel

    hf = AutoModel.from_config(config, add_pooling_layer=False).to(device)
    backbone = FrozenBackbone(hf)
    plugin = build_plugin("kadapter", plugin_cfg or None, backbone.spec).to(device)
    head = build_objective("relation_classification", 2 * backbone.spec.hidden_size,
                           {"labels": [f"P{i}" for i in range(40)]}).to(device)
    ids = torch.randint(5, config.vocab_size, (batch_size, seq), device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "subj_pos": torch.full((batch_size,), 3, device=device),
             "obj_pos": torch.full((batch_size,), 9, device=device),
             "labels": torch.randint(0, 40, (batch_size,), device=device)}
    tokens = batch_size * seq
    bb_params = sum(p.numel() for p in hf.parameters())
    pl_params = plugin.num_parameters()
    step_flops = 6 * pl_params * tokens + 2 * bb_params * tokens
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "backbone_params": bb_params, "plugin_params": pl_params, "batch": batch_size, "seq": seq}
    peak_fp32 = matmul_flops(device, torch.float32, 4096 if device.type == "cuda" else 1024)
    peak_bf16 = matmul_flops(device, torch.bfloat16, 8192 if device.type == "cuda" else 1024)
    results["matmul_tflops_fp32"] = peak_fp32 / 1e12
    results["matmul_tflops_bf16"] = peak_bf16 / 1e12
    for mode in ("reference", "kadapt"):
        for bf16 in (False, True):
            r = run(mode, bf16, backbone, plugin, head, batch, args.steps, device)
            peak = peak_bf16 if bf16 else peak_fp32
            r.update(tokens_per_s=tokens / r["step_s"], flops_fraction=step_flops / r["step_s"] / peak)
            results[f"{mode}_{'bf16' if bf16 else 'fp32'}"] = r
    for prec in ("fp32", "bf16"):
        results[f"kadapt_vs_reference_{prec}"] = results[f"reference_{prec}"]["step_s"] / results[f"kadapt_{prec}"]["step_s"]
    results["bf16_vs_fp32_kadapt"] = results["kadapt_fp32"]["step_s"] / results["kadapt_bf16"]["step_s"]
    print(json.dumps(results, indent=2))
    for key in ("kadapt_vs_reference_fp32", "kadapt_vs_reference_bf16", "bf16_vs_fp32_kadapt"):
        print(f"{key}: {results[key]:.3f}")
    if args.results:
        from artifact import write_results

        write_results(args.results, results, "benchmarks/infusion_step.py",
                      {"quick": args.quick, "steps": args.steps, "warmup_steps": 2, "threads": args.threads,
                       "step_s": "wall seconds" if device.type == "cuda" else "CPU seconds of the process", "layers": config.num_hidden_layers,
                       "hidden": config.hidden_size, "plugin": plugin_cfg or "kadapter defaults", "seed": 0})


if __name__ == "__main__":
    main()
