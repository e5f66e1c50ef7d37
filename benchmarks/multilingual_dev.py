"""Multilingual model selection at CPU size: run ``recipes/finetune/ud_pos_multilingual_small.yaml``
(English training, one dev file per language, 2 seeds) or read a finished run, and write
``benchmarks/results/ud_pos_multilingual_small.json`` (per-seed per-language dev, average, mean ± std).

    PYTHONPATH=. python benchmarks/multilingual_dev.py --out /tmp/udml
    PYTHONPATH=. python benchmarks/multilingual_dev.py --from /tmp/udml
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "finetune" / "ud_pos_multilingual_small.yaml"
RESULTS = REPO / "benchmarks" / "results" / "ud_pos_multilingual_small.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ud-pos-multilingual-small")
    parser.add_argument("--from", dest="source", help="a finished run folder (with seeds.json)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    root = Path(args.source or args.out)
    if args.source is None:
        from kadapt.runs.finetune import finetune
        from kadapt.runs.recipe import load_recipe

        finetune(load_recipe(RECIPE), out=root)
    summary = json.loads((root / "seeds.json").read_text(encoding="utf-8"))
    runs = {seed: json.loads((root / f"seed-{seed}" / "metrics.json").read_text(encoding="utf-8"))
            for seed in summary["seeds"]}
    artifact = {
        "recipe": RECIPE.relative_to(REPO).as_posix(), "written_by": "benchmarks/multilingual_dev.py",
        "seeds": summary["seeds"],
        "per_seed": {str(s): {"dev_per_language": {k: v["accuracy"] for k, v in m["dev"]["per_dev"].items()},
                              "dev_average": m["dev"]["accuracy"], "test": m["test"]["accuracy"]}
                     for s, m in runs.items()},
        "dev_average": summary["dev"]["accuracy"], "test": summary["test"]["accuracy"],
    }
    Path(args.results).write_text(json.dumps(artifact, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
