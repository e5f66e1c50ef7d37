"""``kadapt kg-memory``: recompute JAKET's entity context memory for a KG (e.g. an unseen one)."""
from __future__ import annotations

import json


def cmd_kg_memory(args) -> int:
    from kadapt.plugins.jaket.pretraining import memory_for_kg
    from kadapt.runs.recipe import BackboneSection
    from kadapt.runs.context import load_backbone

    backbone = load_backbone(BackboneSection(name_or_path=args.backbone))
    summary = memory_for_kg(args.kg_dir, backbone, plugin_dir=args.plugin, out=args.out,
                            on_error=args.on_error, batch_size=args.batch_size)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_kg_build(args) -> int:
    from kadapt.plugins.jaket.kg_build import build_wikidata_kg

    summary = build_wikidata_kg(args.out, lama=args.lama, codex=args.codex, mpararel=args.mpararel,
                                holdout=args.holdout, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def add_kg_commands(subparsers) -> None:
    kg = subparsers.add_parser("kg", help="Knowledge-graph tools (JAKET).")
    sub = kg.add_subparsers(dest="kg_command", required=True)
    p = sub.add_parser("build", help="Build a Wikidata-linked KG (LAMA T-REx + CoDEx-S + mParaRel aliases) in KG-BERT layout.")
    p.add_argument("--lama", required=True, help="LAMA folder (TREx/P*.jsonl.gz and relations.jsonl).")
    p.add_argument("--codex", help="CoDEx-S folder (triples/, relations/, types/).")
    p.add_argument("--mpararel", help="mParaRel folder (tuples/<lang>/): aliases in 8 languages.")
    p.add_argument("--holdout", type=float, default=0.2, help="Share of LAMA facts held out of the KG (heldout_facts.tsv).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the held-out split.")
    p.add_argument("--out", required=True, help="Folder to write.")
    p.set_defaults(func=cmd_kg_build)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("kg-memory", help="Encode a KG's entity/relation descriptions with LM1 (JAKET memory).")
    p.add_argument("kg_dir", help="KG folder (KG-BERT TSV, CoDEx, DBP15K side 1, Wikidata5M layouts).")
    p.add_argument("--backbone", required=True, help="Backbone folder or hub name (the plug-in's, when --plugin).")
    p.add_argument("--plugin", help="A saved JAKET plug-in: its LM1 depth and description length are used.")
    p.add_argument("--out", required=True, help="Where to write the memory (a .safetensors file).")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="Bad triples: stop, or skip and count.")
    p.add_argument("--batch-size", type=int, default=256, help="Descriptions per LM1 batch.")
    p.set_defaults(func=cmd_kg_memory)
