"""Run metrics: one JSON object per line in ``metrics.jsonl``, and a PNG of the curves."""
from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Append-only JSONL log (flushed per record, so a killed run keeps what it logged); each record
    also goes to the run's experiment ``trackers`` (:mod:`kadapt.runs.trackers`), if any."""

    def __init__(self, path: Path, enabled: bool = True, append: bool = False, trackers: list | None = None):
        self.path = Path(path)
        self.enabled = enabled
        self.trackers = list(trackers or [])
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not append:
                self.path.write_text("")

    def drop_after(self, step: int) -> None:
        """On resume: forget what a killed run logged after its checkpoint (it is logged again),
        including a last line cut off mid-write."""
        if not self.enabled or not self.path.exists():
            return
        from kadapt.core.fileio import atomic_write_text, json_line

        kept = [r for r in read_metrics(self.path, tolerant=True) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json_line(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        from kadapt.core.fileio import json_line

        with self.path.open("a", encoding="utf-8") as handle:  # NaN/Inf as null: every line stays valid JSON
            handle.write(json_line(record) + "\n")
        if self.trackers:
            from kadapt.runs.trackers import tracker_values

            step, values = tracker_values(record)
            for tracker in self.trackers:
                tracker.log(values, step=step)

    def close(self) -> None:
        """Finish the trackers (the JSONL file is closed after every record)."""
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def read_metrics(path: Path, tolerant: bool = False) -> list[dict]:
    """Records of a metrics log; ``tolerant`` skips lines that do not parse (a write cut off by a kill)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if not tolerant:
                raise
    return records


def plot_run(metrics_path: Path, out_png: Path) -> Path | None:
    """Training loss vs step (left) and every dev metric vs step (right)."""
    records = read_metrics(metrics_path, tolerant=True)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("split") == "train"]
    dev = [r for r in records if r.get("split") == "dev"]
    fig, (ax_loss, ax_dev) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], marker=".")
    ax_loss.set(title="training loss", xlabel="optimizer step", ylabel="loss")
    keys = sorted({k for r in dev for k, v in r.items()
                   if isinstance(v, (int, float)) and k not in ("step", "epoch")})
    for key in keys:
        ax_dev.plot([r["step"] for r in dev if key in r], [r[key] for r in dev if key in r], marker="o", label=key)
    ax_dev.set(title="dev metrics", xlabel="optimizer step")
    if keys:
        ax_dev.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
