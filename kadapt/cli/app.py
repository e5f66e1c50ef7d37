"""The ``kadapt`` command: each subcommand is a few lines over a public library function."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import kadapt.plugins  # noqa: F401  (registers the families and their commands)
from kadapt.cli import cache_commands, checkpoint_commands, compare_commands, predict_commands
from kadapt.core.errors import KadaptError
from kadapt.core.family import registered_commands

def _print_json(obj) -> None:
    from kadapt.core.fileio import json_safe

    print(json.dumps(json_safe(obj), indent=2, default=str))


def cmd_infuse(args) -> int:
    from kadapt.core.fileio import json_safe
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import load_recipe

    # several recipes (kadapt infuse A.yaml B.yaml ...): one run, one backbone pass per batch
    recipes = [args.recipe] + [o for o in args.overrides if "=" not in o]
    overrides = [o for o in args.overrides if "=" in o]
    if len(recipes) > 1:
        from kadapt.runs.joint import infuse_many

        results = infuse_many([load_recipe(r, overrides) for r in recipes], out=args.out, resume=args.resume,
                              overwrite=args.overwrite)
    else:
        results = [infuse(load_recipe(args.recipe, overrides), out=args.out, resume=args.resume,
                          overwrite=args.overwrite)]
    for result in results:
        print(f"plug-in written to {result.plugin_dir}" + (f" (zoo: {result.zoo_entry})" if result.zoo_entry else ""))
        print(f"dev: {json.dumps(json_safe(result.train.final_dev))}")
    return 0


def _split_plugins_and_overrides(plugins: list[str] | None, overrides: list[str]) -> tuple[list[str] | None, list[str]]:
    """``--plugins A B training.epochs=1``: argparse gives the override to --plugins; move it back.

    An item is a plug-in folder if it exists; otherwise an item with ``=`` is an override.
    """
    if plugins is None:
        return None, overrides
    kept, extra = [], []
    for item in plugins:
        (extra if "=" in item and not Path(item).exists() else kept).append(item)
    return kept, list(overrides) + extra


def cmd_finetune(args) -> int:
    from kadapt.runs.finetune import finetune
    from kadapt.runs.recipe import load_recipe

    plugins, overrides = _split_plugins_and_overrides(args.plugins, args.overrides)
    recipe = load_recipe(args.recipe, overrides)
    result = finetune(recipe, plugins=plugins, out=args.out, resume=args.resume, overwrite=args.overwrite)
    summary = "seeds.json" if recipe.training.seeds else "metrics.json"
    print(f"metrics written to {result.run_dir / summary}")
    _print_json({k: result.metrics.get(k) for k in ("dev", "test")})
    return 0


def cmd_evaluate(args) -> int:
    from kadapt.runs.finetune import evaluate_run

    _print_json(evaluate_run(args.run_dir, args.data, args.format, on_error=args.on_error, out=args.out))
    return 0


def cmd_plugin_info(args) -> int:
    from kadapt.runs.sizing import describe_kind
    from kadapt.store.plugin_dir import describe_plugin

    if args.plugin:
        info = describe_plugin(args.plugin)
    elif args.kind and args.backbone:
        info = describe_kind(args.kind, args.backbone, meta=args.meta, overrides=args.set or [])
    else:
        raise KadaptError("plugin-info needs --plugin DIR, or --kind KIND --backbone DIR")
    if args.json:
        _print_json(info)
    else:
        for key in ("kind", "name", "parameters", "directory"):
            if key in info:
                print(f"{key}: {info[key]:,}" if isinstance(info[key], int) else f"{key}: {info[key]}")
        if "config_help" in info:  # --kind: every config key, its resolved value and its help
            print("config:")
            for key, value in info["config"].items():
                print(f"  {key}: {value!r}  # {info['config_help'].get(key, '')}")
    return 0


def cmd_zoo(args) -> int:
    from kadapt.store.zoo import Zoo

    zoo = Zoo(args.zoo)
    if args.zoo_command == "list":
        entries = zoo.entries()
        if args.json:
            _print_json({"zoo": str(zoo.root), "entries": entries, "by_backbone": zoo.by_backbone()})
        else:
            for e in entries:
                print(f"{e['name']:24} {e.get('kind', '?'):10} {e.get('parameters') or 0:>12,}  {e.get('error', '')}")
            if not entries:
                print(f"(no plug-ins in {zoo.root})")
    else:
        _print_json(zoo.show(args.name))
    return 0


def cmd_recipe_keys(args) -> int:
    from kadapt.runs.recipe import recipe_help

    keys = recipe_help()
    if args.json:
        _print_json(keys)
        return 0
    for section, fields in keys.items():
        for key, text in fields.items():
            print(f"{section}.{key}: {text}")
    return 0


def cmd_recipe_check(args) -> int:
    from kadapt.runs.recipe import RecipeValueError, check_recipe, load_recipe, missing_data
    from kadapt.runs.trackers import report_to_problems

    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeValueError as err:  # bad values: one line each, exit 1 like any other problem
        print(str(err), file=sys.stderr)
        return 1
    problems = check_recipe(recipe, require_data=args.require_data) + report_to_problems(recipe)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not args.require_data:
        for note in missing_data(recipe):
            print(f"note: {note}", file=sys.stderr)
    if not problems:
        print(f"{args.recipe}: ok")
    return 1 if problems else 0


def cmd_recipe_show(args) -> int:
    from kadapt.runs.recipe import effective_settings, load_recipe, settings_help

    recipe = load_recipe(args.recipe, args.overrides)
    settings = effective_settings(recipe)
    if args.json:
        _print_json(settings)
    else:
        print("\n".join(settings_lines(settings, settings_help(recipe))))
    return 0


def settings_lines(settings: dict, helps: dict[str, str], prefix: str = "", indent: str = "") -> list[str]:
    """YAML of ``settings`` with each key's help as a trailing comment (values in JSON flow style)."""
    lines = []
    for key, value in settings.items():
        dotted = f"{prefix}{key}"
        text = helps.get(dotted, "")
        comment = f"  # {text}" if text else ""
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:{comment}")
            lines += settings_lines(value, helps, f"{dotted}.", indent + "  ")
        else:
            lines.append(f"{indent}{key}: {json.dumps(value, ensure_ascii=False, default=str)}{comment}")
    return lines


def cmd_quickstart(args) -> int:
    from kadapt.quickstart.demo import run_quickstart

    report = run_quickstart(args.out, backbone=args.backbone, seed=args.seed)
    print(report.table)
    return 0


OVERRIDES_HELP = "key.sub=value overrides of the recipe, e.g. training.epochs=1 (before or after the options)."


def build_parser() -> argparse.ArgumentParser:
    from kadapt.core.version import __version__

    parser = argparse.ArgumentParser(prog="kadapt", description="Knowledge plug-ins for frozen encoders.")
    parser.add_argument("--version", action="version", version=f"kadapt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("infuse", help="Train a plug-in from an infuse recipe (several recipes: one joint run).")
    p.add_argument("recipe", help="An infuse recipe (YAML), e.g. recipes/infuse/factual.yaml.")
    p.add_argument("overrides", nargs="*", help="More recipes, then key.sub=value overrides (applied to all), "
                                                "e.g. training.epochs=1")
    p.add_argument("--out", help="Run folder (default: the recipe's output.dir); with several recipes the "
                                 "parent folder of one run folder per recipe name.")
    p.add_argument("--resume", action="store_true", help="Continue from the newest checkpoint in the run folder.")
    p.add_argument("--overwrite", action="store_true", help="Replace a run (and its plug-in) already in the run folder.")
    p.set_defaults(func=cmd_infuse)

    p = sub.add_parser("finetune", help="Fine-tune a task head over the backbone + plug-ins.")
    p.add_argument("recipe", help="A finetune recipe (YAML), e.g. recipes/finetune/relation_classification_small.yaml.")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.add_argument("--plugins", nargs="*", help="Plug-in folders or Hub repo ids (replace the recipe's list; none = "
                                                "bare backbone); a key.sub=value after them is still an override.")
    p.add_argument("--out", help="Run folder (default: the recipe's output.dir).")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="Replace a run already in the run folder.")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="Evaluate a fine-tuned run folder on a data file.")
    p.add_argument("run_dir", help="A fine-tuned run folder (kadapt finetune / model.save_pretrained).")
    p.add_argument("--data", required=True)
    p.add_argument("--format", help="Data format (default: the run's).")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    p.add_argument("--out")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plugin-info", help="Describe a saved plug-in, or the size of a kind on a backbone.")
    p.add_argument("--plugin", help="A saved plug-in folder.")
    p.add_argument("--kind", help="Plug-in kind to size (with --backbone).")
    p.add_argument("--backbone", help="Backbone folder (a config.json is enough with --meta) or hub name.")
    p.add_argument("--meta", action="store_true", help="Build on the meta device: sizes only, no weights.")
    p.add_argument("--set", nargs="*", help="Plug-in config overrides key=value.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugin_info)

    p = sub.add_parser("zoo", help="The plug-in catalog.")
    p.add_argument("--zoo", help="Zoo folder (default: ./adapters_zoo).")
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    z = zsub.add_parser("list")
    z.add_argument("--json", action="store_true")
    z = zsub.add_parser("show", help="One catalog entry: config, backbone, files.")
    z.add_argument("name", help="The plug-in's folder name in the zoo.")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("recipe", help="Recipe tools.")
    rsub = p.add_subparsers(dest="recipe_command", required=True)
    r = rsub.add_parser("check", help="Validate a recipe without running it.")
    r.add_argument("recipe", help="An infuse or finetune recipe (YAML).")
    r.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    r.add_argument("--require-data", action="store_true",
                   help="Also fail when data files under ${KADAPT_DATA_DIR} or plug-in folders are not present (default: a note).")
    r.set_defaults(func=cmd_recipe_check)
    r = rsub.add_parser("keys", help="Every recipe key with its help (data formats, plug-in kinds and "
                                     "objectives as registered now).")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recipe_keys)
    r = rsub.add_parser("show", help="The effective settings of a recipe: every default filled in (plug-in "
                                     "config, objective arguments, fine-tuning mode).")
    r.add_argument("recipe", help="An infuse or finetune recipe (YAML).")
    r.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recipe_show)

    p = sub.add_parser("quickstart", help="The README's main job: a full continual-infusion story on generated data.")
    p.add_argument("--out", default="kadapt-quickstart")
    p.add_argument("--backbone", default="tiny", help="'tiny' (built from a config), 'minilm' (needs the extra) or a folder.")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_quickstart)

    for add_commands in (cache_commands.add_commands, checkpoint_commands.add_commands, compare_commands.add_commands,
                         predict_commands.add_commands,
                         *registered_commands()):
        add_commands(sub)  # feature areas and plug-in families contribute their own subcommands
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like ``parse_args``, but ``key=value`` overrides may also follow the options (``kadapt finetune R
    --out X a.b=1``): argparse leaves them over, and they join the command's overrides."""
    args, extra = parser.parse_known_args(argv)
    takes_overrides = isinstance(vars(args).get("overrides"), list)
    stray = [item for item in extra if not (takes_overrides and "=" in item and not item.startswith("-"))]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = args.overrides + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KadaptError as err:
        print(f"kadapt: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"kadapt: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
