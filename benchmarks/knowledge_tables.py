"""Renderers of the knowledge-effect tables (``benchmarks/knowledge_effect.py`` = ``kadapt compare``) for
``benchmarks/tables.py``: every grid's rows, the verdict per grid, the fact-recall probe, the wall time per
grid and call, and the hidden-state cache timing of one infusion."""
from __future__ import annotations

from kadapt.runs.compare_stats import format_ci
from table_format import md_rows as _rows


def _main_metric(dev: dict) -> str:
    """An infusion's headline dev metric: accuracy for relation classification, else its first metric (UAS)."""
    return "accuracy" if "accuracy" in dev else next(k for k in sorted(dev) if k != "wall_seconds")


def knowledge_effect(data: dict) -> str:
    """Every grid of ``kadapt compare`` runs: main test metric and paired bootstrap 95% CIs (points)."""
    rows = []
    for grid, run in data["grids"].items():
        for row in run["summary"]:
            rows.append([grid, f"{row['task']} ({row['metric']})", row["variant"], str(row["test"]["n"]),
                         f"{100 * row['test']['mean']:.1f} ± {100 * row['test']['std']:.1f}", format_ci(row.get("vs_bare")),
                         format_ci(row.get("vs_twin")), format_ci(row.get("vs_lower_layers"))])
    return _rows(["grid", "task (metric)", "variant", "runs", "test, mean ± std", "− bare [95% CI]",
                  "− R-twin [95% CI]", "− lower layers [95% CI]"], ["---"] * 3 + ["---:"] * 5, rows)


def knowledge_effect_verdict(data: dict) -> str:
    """Per grid: the real tasks on which an infused plug-in beats its R-twin with the 95% CI above zero."""
    rows = []
    for grid, run in data["grids"].items():
        real = [r for r in run["summary"] if not r["task"].startswith("recall-")]
        wins = sorted({r["task"] for r in real if r.get("vs_twin") and r["vs_twin"]["ci95"][0] > 0})
        best = {}
        for r in real:
            if r.get("vs_twin") and (r["task"] not in best or r["vs_twin"]["diff"] > best[r["task"]]["vs_twin"]["diff"]):
                best[r["task"]] = r
        cells = "; ".join(f"{t}: {b['variant']} {format_ci(b['vs_twin'])}" for t, b in best.items())
        rows.append([grid, run["note"] or "–", cells or "–", ", ".join(wins) or "none",
                     "yes" if len(wins) >= 2 else "no"])
    return _rows(["grid", "lever", "best infused − R-twin per task [95% CI]", "tasks with CI > 0", "goal met (≥ 2 tasks)"],
                 ["---"] * 5, rows)


def fact_recall(data: dict) -> str:
    rows = []
    for grid, run in data["grids"].items():
        for row in run.get("fact_recall", {}).get("table", []):
            rows.append([grid, row["variant"], str(row["runs"]), f"{100 * row['infused']:.1f}", f"{100 * row['held_out']:.1f}",
                         f"{100 * row['diff_mean']:+.1f} ± {100 * row['diff_std']:.1f}",
                         f"{100 * row['diff_min']:+.1f} / {100 * row['diff_max']:+.1f}"])
    return _rows(["grid", "variant", "runs", "infused facts acc", "held-out facts acc", "infused − held-out (mean ± std)",
                  "min / max"], ["---", "---"] + ["---:"] * 5, rows)


def _calls(run: dict) -> list[dict]:
    """A grid's calls with their timings (a merged grid lists every call; a single call has its own)."""
    return run.get("timing_calls") or [{"timings": run["timings"]}]


def knowledge_effect_time(data: dict) -> str:
    """Per grid: each infusion it used, then per call the time in infusions, backbone states (hidden-state
    cache build or read), the other feature work (plug-ins, lower layers, reading data) and the heads."""
    rows = []
    for grid, run in data["grids"].items():
        used = {f"seed-{s}" for s in run["meta"]["infusion_seeds"]}
        for name, dev in run.get("infusion_dev", {}).items():
            if "wall_seconds" in dev and name.split("/")[-1] in used:
                metric = _main_metric(dev)
                rows.append([grid, f"infusion {name} (dev {metric} {100 * dev[metric]:.1f})", f"{dev['wall_seconds']:.0f}"])
        calls = _calls(run)
        for number, call in enumerate(calls, 1):
            t = call["timings"]
            states = sum(v for k, v in t.items() if k.endswith("backbone states (cache build or read)"))
            features = sum(v for k, v in t.items() if k.endswith("read + features")) - states
            heads = sum(v for k, v in t.items() if k.endswith(": heads"))
            for step, seconds in (("infusions and twins", t.get("infusions and twins", 0.0)),
                                  ("backbone states (cache build or read)", states),
                                  ("plug-in / lower-layer features, reading data", features), ("heads", heads),
                                  ("total", t["total"])):
                rows.append([grid, f"call {number}/{len(calls)}: {step}", f"{seconds:.0f}"])
    return _rows(["grid", "step", "wall seconds"], ["---", "---", "---:"], rows)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def knowledge_effect_cache(data: dict) -> str:
    """One infusion timed three ways (no cache / cache built from empty / cache hit), then each grid's whole
    comparison (every call summed)."""
    timing = data.get("cache_timing")
    rows = []
    if timing:
        modes = timing["modes"]
        base = modes["no cache"]["wall_seconds"]
        for mode, m in modes.items():
            metric = _main_metric(m["dev"])
            detail = f"dev {metric} {100 * m['dev'][metric]:.1f}"
            if m["cache_bytes_on_disk"]:
                detail += f"; cache {m['cache_bytes_on_disk'] / 2**20:,.0f} MB on disk"
            rows.append([f"one infusion: {mode}", f"{m['wall_seconds']:.0f}", f"{base / m['wall_seconds']:.2f}×", detail])
    for grid, run in data["grids"].items():
        calls = _calls(run)
        seconds = sum(call["timings"]["total"] for call in calls)
        rows.append([f"grid {grid}: the whole comparison", f"{seconds:.0f}", "–",
                     f"{_plural(len(calls), 'call')}, {_plural(run.get('threads', 1), 'thread')}"])
    table = _rows(["what", "wall seconds", "no cache ÷ this", "detail"], ["---", "---:", "---:", "---"], rows)
    if not timing:
        return table
    return table + (f"\n*One infusion: `{timing['recipe']}` {' '.join(timing['overrides'])}, seed {timing['seed']}, "
                    f"{timing['epochs']} epochs, {timing['threads']} threads, 1-min load average "
                    f"{timing['loadavg_end'][0]:.1f} at the end; `{timing['command']}`.*\n")


def knowledge_effect_headline(data: dict) -> str:
    """One line per grid: the first plug-in (F) minus its R-twin on each real task, 95% CI (points)."""
    tasks = list(dict.fromkeys(r["task"] for run in data["grids"].values() for r in run["summary"]
                               if not r["task"].startswith("recall-")))
    rows = []
    for grid, run in data["grids"].items():
        first = next((r["variant"] for r in run["summary"] if r.get("vs_twin")), None)
        cells = {r["task"]: format_ci(r["vs_twin"]) for r in run["summary"] if r["variant"] == first and r.get("vs_twin")}
        rows.append([grid, first or "–", *[cells.get(task, "–") for task in tasks]])
    return _rows(["grid", "plug-in", *[f"{task}: − R-twin [95% CI]" for task in tasks]], ["---", "---"] + ["---:"] * len(tasks),
                 rows)
