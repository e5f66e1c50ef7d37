"""``kadapt compare``: bare vs plug-ins vs their R-twins (and the lower-layers control) over seeds."""
from __future__ import annotations


def cmd_compare(args) -> int:
    from kadapt.runs.compare import compare, plugin_source
    from kadapt.runs.recipe import load_recipe

    recipes = [args.recipe] + [o for o in args.overrides if "=" not in o]
    plugins, moved = split_plugins(args.plugins or [])
    overrides = [o for o in args.overrides if "=" in o] + moved
    result = compare([load_recipe(r, overrides) for r in recipes], [plugin_source(p) for p in plugins],
                     head_seeds=args.head_seeds, infusion_seeds=args.infusion_seeds, out=args.out,
                     resume=args.resume, overwrite=args.overwrite, draws=args.draws,
                     stack_lower=args.stack_lower_layers)
    print(result.table)
    print(f"written: {result.out / 'compare.json'}, {result.out / 'compare.md'}, {result.out / 'compare.png'}")
    return 0


def split_plugins(items: list[str]) -> tuple[list[str], list[str]]:
    """``--plugins F=a.yaml training.epochs=1``: argparse gives the override to --plugins; move it back.
    An item is a plug-in when its path (after ``NAME=``) exists."""
    from pathlib import Path

    plugins, overrides = [], []
    for item in items:
        (plugins if Path(item.rpartition("=")[2]).exists() or "=" not in item else overrides).append(item)
    return plugins, overrides


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("compare", help="Does the knowledge help? bare / plug-ins / R-twins / lower layers, "
                                              "over head and infusion seeds, with paired bootstrap CIs.")
    p.add_argument("recipe", help="A fine-tune recipe (a task); more recipes may follow among the overrides.")
    p.add_argument("overrides", nargs="*", help="More fine-tune recipes, then key.sub=value overrides (applied to all).")
    p.add_argument("--plugins", nargs="*", metavar="[NAME=]PATH",
                   help="Plug-ins: infuse recipes (re-infused per --infusion-seeds) or plug-in folders.")
    p.add_argument("--head-seeds", nargs="+", type=int, default=[42, 7, 1])
    p.add_argument("--infusion-seeds", nargs="+", type=int, default=None,
                   help="Seeds of the re-infusions (infuse recipes; default: each infuse recipe's training.seed).")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--draws", type=int, default=1000, help="Bootstrap resamples.")
    p.add_argument("--stack-lower-layers", action="store_true",
                   help="Also each plug-in and R-twin on top of the lower-layers control (F+layers, R(F+layers)).")
    p.add_argument("--resume", action="store_true", help="Continue a comparison: finished cells are kept.")
    p.add_argument("--overwrite", action="store_true", help="Start the comparison in --out over.")
    p.set_defaults(func=cmd_compare)
