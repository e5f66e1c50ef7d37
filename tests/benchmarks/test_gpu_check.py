"""benchmarks/gpu_check.sh works before a GPU is ever lent: its --dry-run (tiny shapes, CPU) runs
every part, prints ``name: value`` lines that are exactly what it writes to the JSON, and the cached
infusion path gives the live path's loss (fp32 cache in the dry run); without a GPU and without
--dry-run it stops with one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAMES = ["device", "matmul_tflops_fp32", "cache_build_tokens_per_s", "infusion_reference_step_s",
         "infusion_reference_tokens_per_s", "infusion_cached_step_s", "infusion_cached_tokens_per_s",
         "infusion_cached_speedup", "infusion_cached_vs_reference_first_loss_abs_diff"] + [
    f"gc_{case}_{on}_{what}" for case in ("backbone_full", "jaket_lm2", "trelm_attribution")
    for on in ("off", "on") for what in ("peak_gib", "tokens_per_s")] + ["total_seconds"]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_dry_run_prints_and_writes_every_figure(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run("--dry-run", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line]
    data = json.loads(out.read_text())
    assert data["written_by"] == "benchmarks/gpu_check.py" and data["dry_run"] is True
    results = data["results"]
    assert [name for name, _ in lines] == NAMES == list(results)
    assert all(value == str(results[name]) for name, value in lines)
    assert results["infusion_cached_vs_reference_first_loss_abs_diff"] == 0.0
    assert all(results[n] is None for n in NAMES if n.endswith("_peak_gib"))  # no CUDA in the dry run
    assert all(results[n] > 0 for n in NAMES if n.endswith("_tokens_per_s"))


def test_without_a_gpu_it_says_how_to_check_the_script():
    proc = _run()
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check: error: no CUDA device visible; run with --dry-run to check the script on the CPU"


def test_gpu_table_reads_each_figure_from_the_results_file():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import tables

    data = {"torch": "t", "steps": 3, "written_by": "benchmarks/gpu_check.py", "results": {
        "device": "GPU X", "matmul_tflops_bf16": 700.4, "infusion_reference_step_s": 0.05, "infusion_cached_step_s": 0.025,
        "infusion_reference_tokens_per_s": 1000, "infusion_cached_tokens_per_s": 2000, "infusion_cached_speedup": 2.0,
        "infusion_cached_vs_reference_first_loss_abs_diff": 0.00012, "cache_build_tokens_per_s": 5000, "total_seconds": 9.6,
        **{f"gc_{case}_{mode}_{what}": value for case in ("backbone_full", "jaket_lm2", "trelm_attribution")
           for mode, scale in (("off", 2), ("on", 1)) for what, value in (("peak_gib", 1.5 * scale), ("tokens_per_s", 100 * scale))}}}
    lines = tables.gpu_check(data).splitlines()
    assert "| infusion step, two K-Adapter plug-ins, batch 128 × 64: live backbone / cached (ms) | 50.0 / 25.0 |" in lines
    assert "| cached ÷ live speed-up | **2.00×** |" in lines
    assert "| `jaket_lm2`: CUDA peak GiB off / on; tokens/s off / on | 3.00 / 1.50; 200 / 100 |" in lines
    assert lines[-1].startswith("*GPU X, torch t, bf16 autocast") and "10 s inside the script" in lines[-1]
