"""JAKET on text: the run-time options of a fine-tuning recipe (``plugin_options.jaket``) and the
entity linking the plug-in asks encoders for.

``plugin_options.jaket``::

    kg: DIR              # KG folder (kadapt KG formats; `kadapt kg build` writes a Wikidata-linked one)
    memory: FILE         # its entity memory (`kadapt kg-memory`); default: LM1 encodes it now
    use_ids: true        # reader ids (FewRel, LAMA T-REx) first ...
    linker: {}           # ... the dictionary linker for the rest (LinkerConfig keys), or false: none
    aliases: FILE        # optional extra names: "QID<TAB>alias<TAB>alias..." per line

The KG's ``entity2aliases.tsv`` (written by ``kadapt kg build``) is read when present.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kadapt.core.errors import KadaptError
from kadapt.data.mentions import EntityLinking
from kadapt.plugins.jaket.linker import DictionaryLinker, LinkerConfig

OPTION_KEYS = ("kg", "memory", "use_ids", "linker", "aliases", "on_error")
ALIAS_FILE = "entity2aliases.tsv"


def read_aliases(path: str | Path) -> dict[str, list[str]]:
    """``QID \\t alias \\t alias ...`` lines -> ``{QID: [aliases]}`` (blank lines skipped)."""
    aliases: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = [f.strip() for f in line.split("\t")]
        if not fields[0]:
            continue
        if len(fields) < 2:
            raise KadaptError(f"{path}:{number}: expected QID<TAB>alias..., got {line[:40]!r}")
        aliases.setdefault(fields[0], []).extend(f for f in fields[1:] if f)
    return aliases


def check_options(options: Mapping, source: str) -> None:
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise KadaptError(f"{source}: plugin_options.jaket: unknown key(s) {unknown}; known: {list(OPTION_KEYS)}")
    if "kg" not in options:
        raise KadaptError(f"{source}: plugin_options.jaket needs 'kg' (the KG folder whose entities text is linked to)")


def build_linking(graph, options: Mapping, source: str) -> EntityLinking:
    """The :class:`EntityLinking` of a run: the KG's id -> row map, reader ids, the linker."""
    from kadapt.core.paths import resolve_path

    linker = None
    linker_options = options.get("linker", {})
    if linker_options is not False:
        if not isinstance(linker_options, Mapping):
            raise KadaptError(f"{source}: plugin_options.jaket.linker must be a mapping or false")
        aliases: dict[str, list[str]] = {}
        kg_aliases = resolve_path(str(options["kg"])) / ALIAS_FILE
        for path in [kg_aliases] if kg_aliases.exists() else []:
            aliases.update(read_aliases(path))
        if options.get("aliases"):
            for key, names in read_aliases(resolve_path(str(options["aliases"]))).items():
                aliases.setdefault(key, []).extend(names)
        config = LinkerConfig.from_dict(linker_options, f"{source}: plugin_options.jaket.linker")
        linker = DictionaryLinker.from_graph(graph, aliases, config)
    rows = {e: i for i, e in enumerate(graph.entity_ids)}
    return EntityLinking(rows, linker=linker, use_ids=bool(options.get("use_ids", True)))


def prepare_text_run(plugin, options: Mapping, backbone, source: str) -> EntityLinking:
    """Attach ``options["kg"]`` (its memory from ``options["memory"]``, else LM1 encodes it) to
    ``plugin`` and return the run's entity linking (:meth:`JaketPlugin.prepare_run`)."""
    from kadapt.core.paths import resolve_path
    from kadapt.kg import read_kg
    from kadapt.plugins.jaket.kg_context import context_for

    check_options(options, source)
    graph = read_kg(resolve_path(str(options["kg"])), policy=options.get("on_error", "raise"))
    memory = resolve_path(str(options["memory"])) if options.get("memory") else None
    plugin.attach_kg(context_for(plugin, backbone, graph, memory))
    return build_linking(graph, options, source)
