"""Linguistic infusion from raw text (spaCy parses) vs from gold CoNLL-U trees, same sentences and
settings: ``recipes/infuse/linguistic_raw_small.yaml`` and the same recipe with ``data.format: conllu``.
Both report dev UAS against UD English EWT's gold dev trees; writes ``benchmarks/results/raw_text_uas.json``.

    PYTHONPATH=. python benchmarks/raw_text_uas.py --out /tmp/raw-uas
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "infuse" / "linguistic_raw_small.yaml"
RESULTS = REPO / "benchmarks" / "results" / "raw_text_uas.json"


def main(argv: list[str] | None = None) -> int:
    from kadapt.core.fileio import read_json
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import load_recipe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/raw-text-uas")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    rows = {}
    for name, overrides in (("raw text, spaCy parses", []), ("CoNLL-U gold trees", ["data.format=conllu"])):
        recipe = load_recipe(RECIPE, overrides)
        started = time.perf_counter()
        result = infuse(recipe, out=Path(args.out) / ("raw" if not overrides else "gold"))
        config = read_json(result.plugin_dir / "kadapt_config.json", "plug-in config")
        card = (result.plugin_dir / "README.md").read_text(encoding="utf-8")
        rows[name] = {"dev_uas": result.train.final_dev["uas"], "seconds": round(time.perf_counter() - started, 1),
                      "train_format": recipe.data.format,
                      "card_data_line": next((line for line in card.splitlines() if "train=" in line), ""),
                      "objectives": config.get("objectives", [{}])[0].get("name")}
    artifact = {"recipe": RECIPE.relative_to(REPO).as_posix(), "written_by": "benchmarks/raw_text_uas.py",
                "dev": "UD English EWT dev, gold trees", "rows": rows}
    Path(args.results).write_text(json.dumps(artifact, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(artifact, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
