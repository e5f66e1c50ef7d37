"""``kadapt cache build|info|clear``: the hidden-state cache from the command line."""
from __future__ import annotations

import json

from kadapt.store import hidden_cache as cache


def build_for_recipes(recipes: list, report=print) -> list[dict]:
    """Build (or validate) the train/dev cache entries the recipes' infusion would read.

    Several recipes sharing data and backbone get one entry holding the union of their layers.
    ``report`` receives the disk estimate before anything is computed.
    """
    from kadapt.core.model import KnowledgeModel
    from kadapt.runs.infuse import cache_splits
    from kadapt.runs.joint import prepare_members

    backbone, members = prepare_members(recipes)
    lead = members[0]
    union = KnowledgeModel(backbone, [p for m in members for p in m.model.plugins])
    layers = union.required_layers()
    size = sum(cache.estimate_bytes(s, layers, backbone.spec.hidden_size, lead.recipe.training.cache_dtype)
               for s in (lead.train_set, lead.dev_set) if s)
    report(f"hidden-state cache for {', '.join(m.recipe.name for m in members)}: layers {layers}, "
           f"{len(lead.train_set)} train + {len(lead.dev_set)} dev examples, {size / 1e6:.1f} MB "
           f"({lead.recipe.training.cache_dtype}) in {lead.recipe.training.cache_dir or cache.default_cache_dir()}")
    _, _, collates = cache_splits(union, lead.recipe, lead.train_set, lead.dev_set)
    return [{"split": split, "entry": str(c.cache.folder), "examples": len(c.cache), "layers": c.cache.layers}
            for split, c in (("train", collates["collate_fn"]), ("dev", collates.get("dev_collate_fn"))) if c]


def cmd_cache(args) -> int:
    if args.cache_command == "build":
        from kadapt.runs.recipe import load_recipe

        recipes = [args.recipe] + [o for o in args.overrides if "=" not in o]
        overrides = [o for o in args.overrides if "=" in o] + ["training.cache=true"]
        if args.cache_dir:
            overrides.append(f"training.cache_dir={args.cache_dir}")
        for entry in build_for_recipes([load_recipe(r, overrides) for r in recipes]):
            print(f"{entry['split']}: {entry['entry']} ({entry['examples']} examples, layers {entry['layers']})")
    elif args.cache_command == "info":
        info = cache.describe(args.cache_dir)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print(f"{info['cache_dir']}: {len(info['entries'])} entries, {info['bytes'] / 1e6:.1f} MB")
            for e in info["entries"]:
                print(f"  {e['entry']}  {e['bytes'] / 1e6:8.1f} MB  {e['state']}"
                      + (f"  layers {e['layers']}, {e['examples']} examples, {e['dtype']}" if "layers" in e else ""))
    elif args.cache_command == "prune":
        _prune(args)
    else:
        if not args.yes and not _confirm(args.cache_dir):
            return 1
        freed = cache.clear(args.cache_dir)
        print(f"removed {freed / 1e6:.1f} MB from {args.cache_dir or cache.default_cache_dir()}")
    return 0


def _prune(args) -> None:
    from kadapt.store.cache_prune import parse_size, prune

    max_bytes = parse_size(args.max_size) if args.max_size is not None else None
    plan = prune(args.cache_dir, max_bytes=max_bytes, older_than_days=args.older_than, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for entry in plan.removed:
        print(f"{verb} {entry['entry']}  {entry['bytes'] / 1e6:.1f} MB  ({entry['why']})")
    print(f"{verb} {len(plan.removed)} entries ({plan.freed_bytes / 1e6:.1f} MB); kept {len(plan.kept)} "
          f"({plan.kept_bytes / 1e6:.1f} MB) in {plan.cache_dir}")


def _confirm(cache_dir) -> bool:
    """Ask before deleting every entry; without a terminal, ``--yes`` is required."""
    import sys

    from kadapt.core.errors import KadaptError

    info = cache.describe(cache_dir)
    what = f"{len(info['entries'])} entries ({info['bytes'] / 1e6:.1f} MB) in {info['cache_dir']}"
    if not sys.stdin.isatty():
        raise KadaptError(f"cache clear would delete {what}; pass --yes to confirm")
    answer = input(f"delete {what}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("cache", help="Hidden-state cache of the frozen backbone (build, info, prune, clear).")
    csub = p.add_subparsers(dest="cache_command", required=True)
    c = csub.add_parser("build", help="Compute the states an infuse recipe (or several sharing data) will read.")
    c.add_argument("recipe", help="An infuse recipe (YAML).")
    c.add_argument("overrides", nargs="*", help="More recipes, then key.sub=value overrides.")
    c.add_argument("--cache-dir", help="Cache folder (default: the recipe's training.cache_dir, "
                                       "$KADAPT_CACHE_DIR or ~/.cache/kadapt/hidden_states).")
    for name, text in (("info", "List entries, sizes and their state (complete, incomplete, partial build)."),
                       ("clear", "Delete every entry.")):
        c = csub.add_parser(name, help=text)
        c.add_argument("--cache-dir", help="Cache folder (default: $KADAPT_CACHE_DIR or ~/.cache/kadapt/hidden_states).")
        if name == "info":
            c.add_argument("--json", action="store_true")
        else:
            c.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
    c = csub.add_parser("prune", help="Remove interrupted builds, entries unused for --older-than days, then the "
                                      "least recently used until the cache fits --max-size.")
    c.add_argument("--cache-dir", help="Cache folder (default: $KADAPT_CACHE_DIR or ~/.cache/kadapt/hidden_states).")
    c.add_argument("--max-size", help="Size budget, e.g. 20GB, 500MB, 1.5GiB (0 removes every idle entry).")
    c.add_argument("--older-than", type=float, metavar="DAYS", help="Remove entries not read for this many days.")
    c.add_argument("--dry-run", action="store_true", help="Only print what would be removed.")
    p.set_defaults(func=cmd_cache)
