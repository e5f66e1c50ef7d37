"""Every issue-7 performance benchmark in one run; prints one ``name: value`` line per figure.

    python benchmarks/run.py --quick      # small sizes, well under 5 minutes on 2 cores
    python benchmarks/run.py              # larger batch, more repeats
    python benchmarks/run.py --quick --json benchmarks/results/issue7_cache_quick.json

Times are CPU seconds of this process (one torch thread), so other jobs on a shared machine do not
distort the ratios; wall seconds are printed too. Figures (ratios > 1 mean kadapt's way is faster;
see benchmarks/perf.py for what each mode runs):
``infusion_cached_vs_reference`` (cached step vs the reference style: full HF forward with all hidden
states), ``infusion_uncached_vs_reference``, ``two_plugins_one_pass_vs_separate`` (F+L infusion, one
backbone pass per batch vs one per plug-in), ``finetune_shared_pass_vs_separate`` (fine-tuning step
over [backbone; F; L]), ``cached_step_flops_fraction`` (6 × plug-in params × tokens per cached step
over the measured fp32 matmul FLOP/s), peak RSS of each mode, padding with and without bucketing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import perf
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes (CI / a busy 2-core machine).")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1).")
    parser.add_argument("--json", help="Also write every raw figure to this JSON file.")
    parser.add_argument("--rss", action="store_true", help="Also measure each mode's peak RSS in a fresh process.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = perf.Shape(batch=8 if args.quick else 16)
    repeats, steps = (3, 2) if args.quick else (7, 3)
    started = time.perf_counter()
    raw = {"device": "cpu", "threads": args.threads, "shape": vars(shape), "repeats": repeats,
           "steps_per_repeat": steps}
    cache = perf.infusion_cache(shape, repeats, steps)
    raw["infusion"] = cache
    figures = {
        "infusion_cached_vs_reference": cache["reference_step_s"] / cache["cached_step_s"],
        "infusion_uncached_vs_reference": cache["reference_step_s"] / cache["uncached_step_s"],
        "infusion_cached_vs_uncached": cache["uncached_step_s"] / cache["cached_step_s"],
    }
    raw["two_plugins"] = two = perf.two_plugins(shape, repeats, steps)
    figures["two_plugins_one_pass_vs_separate"] = two["two_plugins_one_pass_vs_separate"]
    raw["finetune"] = tune = perf.finetune_step(shape, repeats, steps)
    figures["finetune_shared_pass_vs_separate"] = tune["finetune_shared_pass_vs_separate"]
    figures.update({
        "cached_step_flops_fraction": cache["cached_step_flops_fraction"],
        "matmul_gflops_fp32": cache["matmul_gflops_fp32"],
        "cached_step_gflops": cache["cached_step_gflops"],
    })
    for name in ("reference", "uncached", "cached"):
        figures[f"infusion_{name}_step_cpu_s"] = cache[f"{name}_step_s"]
        figures[f"infusion_{name}_step_wall_s"] = cache[f"{name}_wall_step_s"]
    figures["cache_build_s_per_example"] = cache["cache_build_s"] / cache["cache_build_examples"]
    for bench, result, names in (("infusion", cache, ("reference", "uncached", "cached")),
                                 ("two_plugins", two, ("separate", "joint")),
                                 ("finetune", tune, ("per_plugin", "shared"))):
        for name in names:  # process peak RSS in the mode, and that peak above the mode's starting RSS
            figures[f"peak_rss_mb_{bench}_{name}"] = result[f"{name}_peak_rss_mb"]
            figures[f"step_rss_mb_{bench}_{name}"] = result[f"{name}_extra_rss_mb"]
    if args.rss:  # each mode alone in a fresh process: peaks not blurred by other modes' heap
        for bench, names in (("infusion", ("reference", "uncached", "cached")), ("two_plugins", ("separate", "joint"))):
            for name in names:
                figures[f"fresh_process_peak_rss_mb_{bench}_{name}"] = perf.peak_rss_in_fresh_process(bench, name, shape)
    raw["bucketing"] = pad = perf.bucketing_padding()
    figures.update(pad)
    figures["benchmark_seconds"] = time.perf_counter() - started
    raw["figures"] = figures
    for name, value in figures.items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    if args.json:
        from artifact import write_results

        settings = {k: raw.pop(k) for k in ("device", "threads", "shape", "repeats", "steps_per_repeat")}
        write_results(args.json, raw, "benchmarks/run.py", {**settings, "quick": args.quick, "rss": args.rss})
    return 0


if __name__ == "__main__":
    sys.exit(main())
