"""Linking coverage per data set (by reader ids and by JAKET's dictionary linker) and the linker's
precision / recall on gold mentions, against the Wikidata-linked KG of `kadapt kg build`.

    python benchmarks/jaket_linking_coverage.py --kg KG_DIR [--limit 3000] [--out benchmarks/results/jaket_linking.json]

Data: FewRel val_wiki (h/t Wikidata ids), LAMA T-REx evidence sentences of the facts HELD OUT of the KG
(heldout_facts.tsv) and of the facts kept in it, Open Entity crowd test (a typed mention span, no id).
Coverage = share of instances whose subject / object tokens got a KG entity: "any" (>= 1 of the two) and
"both" (Open Entity: the one typed mention, so any = both); "ids" uses the records' ids only, "linker"
the linker only (ids ignored), "ids+linker" the fine-tuning default (ids first, linker otherwise).
Precision / recall need gold ids, so Open Entity has none.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kadapt.core.errors import DataError  # noqa: E402
from kadapt.data.encoding import encode_relation  # noqa: E402
from kadapt.data.mentions import EntityLinking  # noqa: E402
from kadapt.data.policy import ErrorPolicy  # noqa: E402
from kadapt.data.relations import read_fewrel, read_lama_trex_dir  # noqa: E402
from kadapt.kg import read_kg  # noqa: E402
from kadapt.plugins.jaket.linker import DictionaryLinker, linker_scores  # noqa: E402
from kadapt.plugins.jaket.text_linking import ALIAS_FILE, read_aliases  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def coverage(records, tokenizer, rows, linker, encode=encode_relation) -> dict:
    out = {}
    for name, use_ids, lk in (("ids", True, None), ("linker", False, linker), ("ids+linker", True, linker)):
        linking = EntityLinking(rows, linker=lk, use_ids=use_ids)
        linking.start(name)
        for r in records:
            try:
                encode(r, tokenizer, 256, linking=linking)
            except DataError:  # entity cut off by truncation: the instance is not encoded at all
                linking.stats.drop("instance_truncated")
        cov = linking.stats.coverage()
        out[name] = {"any": round(cov["any_linked"], 4), "both": round(cov["all_linked"], 4),
                     **{k: v for k, v in cov.items() if k.startswith("dropped_")}}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kg", required=True)
    ap.add_argument("--tokenizer", default=None, help="default: the MiniLM encoder's")
    ap.add_argument("--limit", type=int, default=3000)
    ap.add_argument("--out")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from kadapt.core.paths import minilm_path
    from kadapt.data.formats import read_records
    from kadapt.tasks.entity_typing import encode_entity_typing

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or minilm_path())
    graph = read_kg(args.kg)
    rows = {e: i for i, e in enumerate(graph.entity_ids)}
    linker = DictionaryLinker.from_graph(graph, read_aliases(Path(args.kg) / ALIAS_FILE))
    held = {tuple(line.split("\t")) for line in (Path(args.kg) / "heldout_facts.tsv").read_text().splitlines() if line}
    skip = ErrorPolicy("skip")
    fewrel = list(itertools.islice(read_fewrel(DATA / "fewrel" / "val_wiki.json", skip), args.limit))
    trex = list(read_lama_trex_dir(DATA / "lama" / "TREx", policy=ErrorPolicy("skip")))
    trex_held = [r for r in trex if (r.subj_id, r.label, r.obj_id) in held][:args.limit]
    trex_kept = [r for r in trex if (r.subj_id, r.label, r.obj_id) not in held][:args.limit]
    typing = read_records("open_entity", DATA / "open_entity" / "crowd" / "test.json", skip)[:args.limit]
    result = {"script": "benchmarks/jaket_linking_coverage.py", "kg": str(args.kg), "limit": args.limit,
              "kg_entities": graph.num_entities, "linker_names": len(linker.names),
              "linker_ambiguous_names": linker.ambiguous, "data": {}}
    for name, records in (("fewrel_val_wiki", fewrel), ("trex_heldout_facts", trex_held), ("trex_kg_facts", trex_kept)):
        result["data"][name] = {"instances": len(records), "coverage": coverage(records, tokenizer, rows, linker),
                                "linker_vs_gold": {k: round(v, 4) if isinstance(v, float) else v
                                                   for k, v in linker_scores(linker, records).items()}}
    result["data"]["open_entity_crowd_test"] = {"instances": len(typing), "linker_vs_gold": None,
                                                "coverage": coverage(typing, tokenizer, rows, linker, encode_entity_typing)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
