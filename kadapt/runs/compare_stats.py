"""Statistics and reports of ``kadapt compare``: mean ± std per variant, paired bootstrap 95% CIs of
differences, the Markdown table and the plot.

**Paired bootstrap.** A difference "system − control" pairs each system run with the control run of the
same seeds (same head seed, and same infusion seed for an R-twin; the bare backbone and the lower-layers
control have head seeds only). One draw resamples, with replacement, the run pairs AND the test examples
(the same examples for both sides, the pairing of a paired bootstrap); each run's metric is recomputed
from its per-example counts (the head's own ``summarize``, so micro/macro scores are exact), and the draw's
difference is mean(system runs) − mean(control runs) over the drawn pairs. The CI is the 2.5/97.5
percentile of the draws; the point estimate is the difference on all pairs and all examples. Two sources of
spread are covered: which test examples, and which seeds.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np

DRAWS = 1000


def run_metric_draws(counts: np.ndarray, weights: np.ndarray, keys: list[str],
                     summarize: Callable[[dict], dict], metric: str) -> np.ndarray:
    """The metric of one run under each draw of example weights: ``weights`` (draws, n) × ``counts`` (n, K)."""
    sums = weights @ counts
    return np.array([summarize(dict(zip(keys, row)))[metric] for row in sums], dtype=np.float64)


def example_weights(n_examples: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n) multiplicities of each test example in each bootstrap resample (the full set first
    is NOT included: these are resamples only)."""
    picks = rng.integers(0, n_examples, size=(draws, n_examples))
    return np.stack([np.bincount(row, minlength=n_examples) for row in picks]).astype(np.float64)


def paired_bootstrap(system: list[np.ndarray], control: list[np.ndarray], point: tuple[float, float],
                     rng: np.random.Generator) -> dict:
    """CI of mean(system) − mean(control) over pairs: ``system[j]`` / ``control[j]`` are the per-draw
    metrics (from :func:`run_metric_draws`) of pair j's runs; ``point`` the two means on the full data."""
    sys_draws, ctl_draws = np.stack(system), np.stack(control)  # (pairs, draws)
    n_pairs, draws = sys_draws.shape
    chosen = rng.integers(0, n_pairs, size=(draws, n_pairs))
    cols = np.arange(draws)[:, None]
    diffs = (sys_draws[chosen, cols] - ctl_draws[chosen, cols]).mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"diff": point[0] - point[1], "ci95": [float(low), float(high)], "pairs": n_pairs, "draws": draws}


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def format_ci(stat: dict | None) -> str:
    """``+d.d [+l.l, +h.h]`` in points, ✓ when the 95% interval is above zero, ✗ when below; ``–`` for none."""
    if not stat:
        return "–"
    low, high = stat["ci95"]
    mark = " ✓" if low > 0 else (" ✗" if high < 0 else "")
    return f"{100 * stat['diff']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}"


def render_table(summary: list[dict]) -> str:
    """Markdown: per task and variant, main test metric mean ± std and the CIs (points, ×100)."""
    lines = ["| task | variant | twin | runs | test (mean ± std) | − bare [95% CI] | − R-twin [95% CI] "
             "| − lower layers [95% CI] |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in summary:
        stat = row["test"]
        lines.append(f"| {row['task']} ({row['metric']}) | {row['variant']} | {'yes' if row['twin'] else ''} "
                     f"| {stat['n']} | {100 * stat['mean']:.1f} ± {100 * stat['std']:.1f} | {format_ci(row.get('vs_bare'))} "
                     f"| {format_ci(row.get('vs_twin'))} | {format_ci(row.get('vs_lower_layers'))} |")
    return "\n".join(lines) + "\n"


def plot_summary(summary: list[dict], path) -> None:
    """One panel per task: each variant's difference to bare (and to its R-twin) with its 95% CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in summary))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [r for r in summary if r["task"] == task and r.get("vs_bare")]
        labelled: set[str] = set()
        for i, row in enumerate(rows):
            for offset, key, color in ((-0.15, "vs_bare", "tab:blue"), (0.15, "vs_twin", "tab:red")):
                stat = row.get(key)
                if stat:
                    d, (lo, hi) = 100 * stat["diff"], (100 * stat["ci95"][0], 100 * stat["ci95"][1])
                    label = "− bare" if key == "vs_bare" else "− R-twin"
                    ax.errorbar(i + offset, d, yerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=3,
                                label=None if label in labelled else label)
                    labelled.add(label)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{task} ({rows[0]['metric'] if rows else ''}), points")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize_rows(rows: list[dict], counts: list[np.ndarray], summarize: dict[str, Callable],
                   metric: dict[str, str], draws: int = DRAWS, seed: int = 0) -> list[dict]:
    """Per (task, variant): mean ± std of the main test metric and the paired bootstrap CIs against bare,
    the R-twin and the lower-layers control. ``summarize``/``metric``: per task, the head's summarize
    function and main metric. Deterministic for a given ``seed`` (the draws follow the rows' order)."""
    rng = np.random.default_rng(seed)
    summary = []
    for task in dict.fromkeys(r["task"] for r in rows):
        index = [i for i, r in enumerate(rows) if r["task"] == task]
        n = counts[index[0]].shape[0]
        weights = example_weights(n, draws, rng)
        keys = {i: rows[i]["count_keys"] for i in index}  # each run's own count keys (they may differ)
        at = {i: run_metric_draws(counts[i], weights, keys[i], summarize[task], metric[task]) for i in index}
        full = {i: summarize[task](dict(zip(keys[i], counts[i].sum(axis=0))))[metric[task]] for i in index}
        by = {(rows[i]["variant"], rows[i]["infusion_seed"], rows[i]["head_seed"]): i for i in index}
        bare = {rows[i]["head_seed"]: i for i in index if rows[i]["kind"] == "bare"}
        lower = {(rows[i]["lower"], rows[i]["head_seed"]): i for i in index if rows[i]["kind"] == "lower_layers"}
        for variant in dict.fromkeys(rows[i]["variant"] for i in index):
            members = [i for i in index if rows[i]["variant"] == variant]
            first = rows[members[0]]
            entry = {"task": task, "variant": variant, "twin": first["twin"], "kind": first["kind"], "metric": metric[task],
                     "test": mean_std([rows[i]["test"][metric[task]] for i in members]),
                     "infusion_seeds": sorted({rows[i]["infusion_seed"] for i in members}, key=str),
                     "head_seeds": sorted({rows[i]["head_seed"] for i in members})}
            controls = {"vs_bare": lambda r: bare.get(r["head_seed"]),
                        "vs_lower_layers": lambda r: lower.get((r["lower"], r["head_seed"])) if r["kind"] != "lower_layers" else None,
                        "vs_twin": lambda r: (by.get((f"R({r['variant']})", r["infusion_seed"], r["head_seed"]))
                                              if not r["twin"] and r["kind"] in ("plugin", "all") else None)}
            for name, control_of in controls.items():
                pairs = [(i, control_of(rows[i])) for i in members if first["kind"] != "bare"]
                pairs = [(i, c) for i, c in pairs if c is not None]
                if pairs:
                    point = (float(np.mean([full[i] for i, _ in pairs])), float(np.mean([full[c] for _, c in pairs])))
                    entry[name] = paired_bootstrap([at[i] for i, _ in pairs], [at[c] for _, c in pairs], point, rng)
            summary.append(entry)
    return summary
