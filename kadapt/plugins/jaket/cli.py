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


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("kg-memory", help="Encode a KG's entity/relation descriptions with LM1 (JAKET memory).")
    p.add_argument("kg_dir", help="KG folder (KG-BERT TSV, CoDEx, DBP15K side 1, Wikidata5M layouts).")
    p.add_argument("--backbone", required=True, help="Backbone folder or hub name (the plug-in's, when --plugin).")
    p.add_argument("--plugin", help="A saved JAKET plug-in: its LM1 depth and description length are used.")
    p.add_argument("--out", required=True, help="Where to write the memory (a .safetensors file).")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="Bad triples: stop, or skip and count.")
    p.add_argument("--batch-size", type=int, default=256, help="Descriptions per LM1 batch.")
    p.set_defaults(func=cmd_kg_memory)
