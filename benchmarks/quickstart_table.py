"""Run ``kadapt quickstart`` (or read a finished run's ``results.json``) and write the artifact the
quickstart table in ``benchmarks/README.md`` is rendered from: ``benchmarks/results/quickstart.json``.

    PYTHONPATH=. python benchmarks/quickstart_table.py --out /tmp/kadapt-quickstart
    PYTHONPATH=. python benchmarks/quickstart_table.py --from /tmp/kadapt-quickstart   # no new run
    PYTHONPATH=. python benchmarks/tables.py          # re-render the Markdown tables from the JSON files
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "quickstart.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="kadapt-quickstart", help="quickstart folder to run into")
    parser.add_argument("--from", dest="source", help="read this finished quickstart folder instead of running")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    seconds = None
    folder = Path(args.source or args.out)
    if args.source is None:
        from kadapt.quickstart.demo import run_quickstart

        started = time.perf_counter()
        run_quickstart(folder, seed=args.seed)
        seconds = round(time.perf_counter() - started, 1)
    run = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    infusion_dev = {}
    for name in ("factual", "linguistic"):  # the last dev line of each infusion run's metrics.jsonl
        lines = (folder / "runs" / f"infuse-{name}" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        infusion_dev[name] = [json.loads(line) for line in lines if '"split": "dev"' in line][-1]
    artifact = {
        "command": "kadapt quickstart" + (f" --seed {args.seed}" if args.seed else ""),
        "written_by": "benchmarks/quickstart_table.py",
        "machine": f"{platform.machine()}, {platform.system()}, CPU",
        "wall_seconds": seconds,
        **{k: run[k] for k in ("backbone", "seed", "world", "metrics", "infuse_epochs", "finetune_epochs") if k in run},
        "continual_infusion_files_unchanged": run["continual_infusion_files_unchanged"],
        "results": run["results"],
        "infusion_dev": infusion_dev,
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(artifact, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
