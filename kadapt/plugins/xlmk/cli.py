"""``kadapt xlmk-convert``: write a multilingual knowledge folder from mParaRel, LAMA T-REx or DBP15K."""
from __future__ import annotations

import json


def cmd_convert(args) -> int:
    from kadapt.plugins.xlmk.converters import (
        MPARAREL_LANGUAGES,
        convert_dbp15k,
        convert_lama_trex,
        convert_mpararel,
    )

    policy = args.on_error
    if args.source == "mpararel":
        languages = tuple(args.languages.split(",")) if args.languages else MPARAREL_LANGUAGES
        writer = convert_mpararel(args.src, languages, part=args.part, holdout=args.holdout,
                                  max_facts=args.max_facts, policy=policy)
    elif args.source == "lama":
        writer = convert_lama_trex(args.src, mpararel=args.mpararel, part=args.part, holdout=args.holdout,
                                   policy=policy)
    else:
        writer, _ = convert_dbp15k(args.src, max_triples=args.max_facts, policy=policy)
    counts = writer.write(args.out)
    print(json.dumps({"out": str(args.out), **counts}))
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("xlmk-convert", help="convert mParaRel / LAMA T-REx / DBP15K to the XLM-K knowledge format")
    p.add_argument("source", choices=["mpararel", "lama", "dbp15k"], help="which set SRC holds")
    p.add_argument("src", help="mParaRel root, LAMA folder, or one DBP15K pair folder (e.g. dbp15k/zh_en)")
    p.add_argument("out", help="knowledge folder to write (mentions/descriptions/triples.jsonl)")
    p.add_argument("--languages", help="mParaRel: comma-separated languages (default: all 8)")
    p.add_argument("--part", default="all", choices=["all", "train", "test"], help="facts held out by a stable hash")
    p.add_argument("--holdout", type=float, default=0.1, help="test fraction for --part")
    p.add_argument("--max-facts", type=int, default=None, help="mParaRel facts / DBP15K triples to keep")
    p.add_argument("--mpararel", help="LAMA: mParaRel root for other-language labels as descriptions")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    p.set_defaults(func=cmd_convert)
