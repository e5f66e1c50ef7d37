"""CLI ergonomics: overrides before or after the options, ``--plugins`` does not swallow an override,
``training.mixed_precision=no`` (YAML 1.1 reads ``no`` as false) is accepted, ``recipe show`` prints each
key's value with its help, and every subcommand's ``--help`` says what its positional arguments are."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kadapt.cli.app import _split_plugins_and_overrides, build_parser, main, parse_args
from kadapt.runs.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes/finetune/relation_classification_small.yaml")


def test_overrides_may_follow_the_options_and_plugins_do_not_swallow_them(capsys):
    args = parse_args(build_parser(), ["finetune", RECIPE, "--out", "X", "training.epochs=1", "--plugins", "A",
                                       "training.lr=0.1", "--overwrite", "data.limit=4"])
    assert (args.out, args.overwrite) == ("X", True)
    plugins, overrides = _split_plugins_and_overrides(args.plugins, args.overrides)
    assert plugins == ["A"]
    assert overrides == ["training.epochs=1", "data.limit=4", "training.lr=0.1"]
    before = parse_args(build_parser(), ["finetune", RECIPE, "training.epochs=1", "--out", "X"])
    assert before.overrides == ["training.epochs=1"]
    with pytest.raises(SystemExit) as exit_:
        parse_args(build_parser(), ["finetune", RECIPE, "--out", "X", "stray"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "kadapt: error: unrecognized arguments: stray"
    with pytest.raises(SystemExit):  # a command without overrides takes no key=value
        parse_args(build_parser(), ["evaluate", "run", "--data", "d.json", "a.b=1"])


def test_mixed_precision_no_is_accepted(tmp_path):
    assert load_recipe(RECIPE, ["training.mixed_precision=no"]).training.mixed_precision == "no"
    text = load_recipe(RECIPE).to_yaml()
    assert "  mixed_precision: auto\n" in text
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text.replace("  mixed_precision: auto\n", "  mixed_precision: no\n"))
    assert load_recipe(recipe).training.mixed_precision == "no"


def test_recipe_show_prints_each_value_with_its_help(capsys):
    assert main(["recipe", "show", RECIPE, "training.lr=0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  lr: 0.5  # Peak learning rate of AdamW." in lines
    assert "  mixed_precision: \"auto\"  # 'no', 'bf16', 'fp16' or 'auto' (bf16 on a GPU that has it, else no)." in lines
    assert "  fusion: \"concat\"  # concat: [backbone; plug-ins]; kadapter: per plug-in Linear([backbone; plug-in]) -> " \
        "hidden, then concat." in lines  # the fine-tuning mode's defaults, filled in


def _subcommands(parser: argparse.ArgumentParser, path: tuple = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, path + (name,))


def test_every_subcommand_help_names_its_positional_arguments():
    missing = []
    for path, parser in _subcommands(build_parser()):
        for action in parser._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction) and not action.help:
                missing.append(f"{' '.join(path)} {action.dest}")
    assert missing == []
    assert "A finetune recipe (YAML)" in build_parser()._subparsers._group_actions[0].choices["finetune"].format_help()
