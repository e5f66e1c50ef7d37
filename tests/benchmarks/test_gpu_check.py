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
