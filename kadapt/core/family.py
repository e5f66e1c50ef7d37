"""The one registry of plug-in families, objectives' home families, data formats and CLI commands.

A family lives in one folder ``kadapt/plugins/<kind>/`` and makes everything it brings known with ONE
call at the bottom of its ``__init__`` (like PEFT's ``register_peft_method``)::

    register_family(Family(kind="kadapter", plugin=KAdapter, objectives=(DependencyHeadPrediction,),
                           formats={...}, commands=(add_commands,), pipeline=None))

Adding a fifth family is one new folder plus one import line in ``kadapt/plugins/__init__.py``.
Duplicates (a kind, an objective name or a format name registered twice by different owners) are
refused. Family-agnostic pieces (task heads in ``kadapt/tasks``, shared readers in ``kadapt/data``)
register through :func:`register_objective` and :func:`register_format` directly.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import KadaptError, PluginFormatError, RegistryError
from kadapt.core.objective import Objective, objective_owner, register_objective, unregister_objective
from kadapt.core.plugin import Plugin, PluginConfig

#: a data format: ``reader(path, policy=None) -> iterable of records``
Reader = Callable[..., object]
#: a CLI contribution: ``add_commands(subparsers)`` adds parsers that set ``func``
CommandAdder = Callable[[object], None]


class InfusionPipeline:
    """How a family's ``kadapt infuse`` builds the model the training loop trains and what the plug-in
    folder gets. Families whose infusion is "plug-in + objective head over one backbone pass" use the
    standard pipeline of :mod:`kadapt.runs.infuse` (``Family.pipeline = None``); JAKET brings its own
    (knowledge graph, entity memory, neighbour sampling)."""

    def build(self, recipe, backbone, splits):
        """The model to train (``forward(batch) -> ObjectiveOutput``, ``.head``, ``.backbone``,
        ``.plugins``), from the recipe, the frozen backbone and the data splits (train/dev/test records)."""
        raise NotImplementedError

    def plugin_files(self, model, recipe, dev_metrics: dict) -> dict:
        """Keyword arguments of :func:`kadapt.store.plugin_dir.save_plugin` besides the plug-in,
        folder and fingerprint: ``objectives``, ``heads``, ``memory``, ``card``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Family:
    """Everything one plug-in family brings (see the module doc)."""

    kind: str
    plugin: type[Plugin]
    objectives: tuple[type[Objective], ...] = ()
    formats: Mapping[str, Reader] = field(default_factory=dict)
    commands: tuple[CommandAdder, ...] = ()
    pipeline: InfusionPipeline | None = None
    description: str = ""


_FAMILIES: dict[str, Family] = {}
_FORMATS: dict[str, tuple[Reader, str]] = {}
_COMMANDS: list[CommandAdder] = []


def register_format(name: str, reader: Reader, owner: str = "kadapt.data") -> None:
    """Make data format ``name`` readable by recipes (``data.format``); duplicates are refused."""
    if name in _FORMATS and _FORMATS[name][0] is not reader:
        raise RegistryError(f"data format {name!r} is already registered by {_FORMATS[name][1]}")
    _FORMATS[name] = (reader, owner)


def format_reader(name: str) -> Reader:
    try:
        return _FORMATS[name][0]
    except KeyError:
        raise KadaptError(f"unknown data format {name!r}; known: {format_names()}") from None


def format_names() -> list[str]:
    return sorted(_FORMATS)


def register_family(family: Family) -> Family:
    """Register a family's plug-in class, objectives, data formats, commands and pipeline — all of it
    or, when anything clashes with what is registered, none of it (:class:`RegistryError`)."""
    _check_family(family)
    for objective in family.objectives:
        register_objective(objective)
    for name, reader in family.formats.items():
        register_format(name, reader, owner=f"family {family.kind!r}")
    if family.kind not in _FAMILIES:
        _COMMANDS.extend(family.commands)
    _FAMILIES[family.kind] = family
    return family


def _check_family(family: Family) -> None:
    if not family.kind or family.plugin.kind != family.kind:
        raise RegistryError(f"family kind {family.kind!r} must be non-empty and equal its plug-in's kind "
                            f"{family.plugin.kind!r}")
    if family.kind in _FAMILIES and _FAMILIES[family.kind] != family:
        raise RegistryError(f"plug-in family {family.kind!r} is already registered "
                            f"(by {_FAMILIES[family.kind].plugin.__module__})")
    names = [objective.name for objective in family.objectives]
    if len(set(names)) != len(names) or not all(names):
        raise RegistryError(f"family {family.kind!r}: objective names must be non-empty and distinct, got {names}")
    for objective in family.objectives:
        owner = objective_owner(objective.name)
        if owner is not None and owner is not objective:
            raise RegistryError(f"objective {objective.name!r} is already registered by {owner.__module__}")
    for name, reader in family.formats.items():
        if name in _FORMATS and _FORMATS[name][0] is not reader:
            raise RegistryError(f"data format {name!r} is already registered by {_FORMATS[name][1]}")


def unregister_family(kind: str) -> None:
    """Forget a family (tests that register a toy family clean up with this)."""
    family = _FAMILIES.pop(kind)
    for objective in family.objectives:
        unregister_objective(objective.name)
    for name in family.formats:
        _FORMATS.pop(name, None)
    for adder in family.commands:
        _COMMANDS.remove(adder)


def family(kind: str, source: str = "kind") -> Family:
    try:
        return _FAMILIES[kind]
    except KeyError:
        raise PluginFormatError(f"{source}: unknown plug-in kind {kind!r}; known kinds: {registered_kinds()}") from None


def registered_kinds() -> list[str]:
    return sorted(_FAMILIES)


def registered_commands() -> list[CommandAdder]:
    return list(_COMMANDS)


def command_group(subparsers, name: str, help: str):
    """The sub-subparsers of command group ``name`` (e.g. ``kadapt import`` / ``kadapt export``), created
    by the first family that adds to it; later families add their subcommands to the same group."""
    parser = subparsers.choices.get(name)
    if parser is None:
        parser = subparsers.add_parser(name, help=help)
        parser.kadapt_group = parser.add_subparsers(dest=f"{name}_what", required=True)
    return parser.kadapt_group


def register_plugin(cls: type[Plugin]) -> type[Plugin]:
    """Class decorator for a plug-in that brings nothing else: ``register_family(Family(cls.kind, cls))``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} must set a non-empty `kind`")
    register_family(Family(kind=cls.kind, plugin=cls))
    return cls


def plugin_class(kind: str, source: str = "kind") -> type[Plugin]:
    return family(kind, source).plugin


def build_plugin(
    kind: str, config: PluginConfig | Mapping | None, spec: BackboneSpec, source: str = "config"
) -> Plugin:
    """Instantiate a registered plug-in from a config object or a plain dict."""
    cls = plugin_class(kind, source)
    if config is None:
        config = cls.config_class()
    elif not isinstance(config, PluginConfig):
        config = cls.config_class.from_dict(config, source=source)
    elif not isinstance(config, cls.config_class):
        raise PluginFormatError(
            f"{source}: config of type {type(config).__name__} given for kind {kind!r} "
            f"(expects {cls.config_class.__name__})"
        )
    try:
        return cls(config, spec)
    except (KadaptError, ValueError) as err:  # a config value the plug-in or backbone cannot take: name the file
        if str(err).startswith(str(source)):
            raise
        raise PluginFormatError(f"{source}: {err}") from None
