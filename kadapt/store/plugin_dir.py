"""The plug-in directory format (README "Plug-in format"): save, strict load, describe.

A plug-in directory holds ``kadapt_config.json`` (kind, name, format_version, config, backbone
fingerprint, objectives, created_by; format 1 folders named it ``adapter_config.json``, which PEFT and
AdapterHub use for their own schemas — such folders still load, with a one-line note, and a folder
that holds a PEFT or AdapterHub adapter is refused in one line that says how to load it), ``model.safetensors`` (plug-in weights only; metadata kind and
format_version), a ``README.md`` model card, and optionally ``objective_heads.safetensors`` and
``memory.safetensors``, and ``manifest.json`` (sha256 of every file). The folder is written whole under
a unique staging name and switched in with one rename (:mod:`kadapt.core.folders`), so a reader sees
the old plug-in or the new one, never a mix; an existing plug-in is replaced only with
``overwrite=True``. The tensor files' metadata binds them to the config (``config_sha256``). Loading
checks everything and names the file (and key).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kadapt.core.version import __version__
from kadapt.core.backbone import BackboneSpec, Fingerprint
from kadapt.core.errors import PluginFormatError
from kadapt.core.fileio import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors
from kadapt.core.folders import (FolderExistsError, check_manifest, check_path_length, clean_stale, folder_has_content,
                                 publish_folder, recover_folder, staging_path, write_manifest)
from kadapt.store.plugin_checks import binding_metadata, check_binding, check_tensors
from kadapt.core.family import build_plugin, plugin_class
from kadapt.core.plugin import Plugin

FORMAT_VERSION = 2  # 2: the config file is kadapt_config.json (1: adapter_config.json)
SUPPORTED_FORMAT_VERSIONS = (1, 2)
CONFIG_FILE = "kadapt_config.json"
LEGACY_CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "model.safetensors"
HEADS_FILE = "objective_heads.safetensors"
MEMORY_FILE = "memory.safetensors"
CARD_FILE = "README.md"

log = logging.getLogger(__name__)


@dataclass
class LoadedPlugin:
    """A plug-in read from disk, with what was saved beside it."""

    plugin: Plugin
    directory: Path
    record: dict
    fingerprint: Fingerprint
    heads: dict[str, torch.Tensor] = field(default_factory=dict)
    memory: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.record["kind"]

    @property
    def name(self) -> str:
        return self.record["name"]


def save_plugin(
    plugin: Plugin,
    directory: str | Path,
    fingerprint: Fingerprint,
    *,
    objectives: list[dict] | None = None,
    heads: dict[str, torch.Tensor] | None = None,
    memory: dict[str, torch.Tensor] | None = None,
    card: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``plugin`` to ``directory`` in the plug-in format; returns the directory.

    The folder is staged whole and switched in with one rename; an existing plug-in (or any non-empty
    folder) at ``directory`` is an error unless ``overwrite=True``.
    """
    directory = check_path_length(Path(directory), "plug-in folder")
    if folder_has_content(directory) and not overwrite:
        raise FolderExistsError(f"{directory}: a plug-in already exists here; pass overwrite=True "
                                "(CLI: --overwrite) to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(directory)
    staging = staging_path(directory)
    staging.mkdir()
    try:
        _write_files(staging, plugin, fingerprint, objectives, heads, memory, card)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_folder(staging, directory, overwrite=overwrite, what="plug-in")


def _write_files(directory: Path, plugin: Plugin, fingerprint: Fingerprint, objectives, heads, memory, card) -> None:
    record = {
        "kind": plugin.kind,
        "name": plugin.config.name,
        "format_version": FORMAT_VERSION,
        "config": plugin.config.to_dict(),
        "backbone": fingerprint.to_dict(),
        "objectives": list(objectives or []),
        "parameters": plugin.num_parameters(),
        "created_by": f"kadapt {__version__}",
    }
    meta = {"kind": plugin.kind, "format_version": str(FORMAT_VERSION), **binding_metadata(record)}
    save_tensors(directory / WEIGHTS_FILE, plugin.state_dict(), meta)
    if heads:
        save_tensors(directory / HEADS_FILE, heads, meta)
    if memory:
        save_tensors(directory / MEMORY_FILE, memory, meta)
    card = dict(card or {})
    card["notes"] = plugin.card_notes() + list(card.get("notes", []))
    atomic_write_text(directory / CARD_FILE, render_card(record, card))
    atomic_write_json(directory / CONFIG_FILE, record)
    write_manifest(directory)


def has_plugin_config(directory: str | Path) -> bool:
    """True when ``directory`` has a plug-in config file (``kadapt_config.json``, or the format-1 name)."""
    return any((Path(directory) / name).is_file() for name in (CONFIG_FILE, LEGACY_CONFIG_FILE))


def config_file(directory: str | Path, *, note: bool = True) -> Path:
    """The plug-in config of ``directory``: ``kadapt_config.json``; else a format-1 ``adapter_config.json``
    (a one-line note); a PEFT or AdapterHub adapter folder is refused with how to load it."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    legacy = directory / LEGACY_CONFIG_FILE
    if path.is_file() or not legacy.is_file():
        return path
    foreign = foreign_adapter(directory)
    if foreign:
        raise PluginFormatError(f"{legacy}: {foreign}")
    if note:
        log.warning("%s: kadapt plug-in of format 1 (config in %s, now named %s); it loads as is, re-save it "
                    "to write the new name", directory, LEGACY_CONFIG_FILE, CONFIG_FILE)
    return legacy


def foreign_adapter(directory: Path) -> str | None:
    """What a folder with ``adapter_config.json`` holds when it is not a kadapt plug-in, and how to load
    it (``None`` for a kadapt format-1 folder)."""
    legacy = directory / LEGACY_CONFIG_FILE
    try:
        data = json.loads(legacy.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and "peft_type" in data:
        return (f"a PEFT adapter (peft_type {data['peft_type']!r}), not a kadapt plug-in; load it with peft: "
                "PeftModel.from_pretrained(base_model, folder)")
    hub_files = ("pytorch_adapter.bin", "pytorch_adapter.safetensors", "adapter_model.safetensors")
    found = [name for name in hub_files if (directory / name).exists()]
    if found or (isinstance(data, dict) and "kind" not in data and "model_name" in data and "config" in data):
        return (f"an AdapterHub (`adapters` library) adapter{f' ({found[0]})' if found else ''}, not a kadapt "
                "plug-in; load it with adapters: adapters.init(model); model.load_adapter(folder)")
    return None


def read_record(directory: str | Path, expected_kind: str | None = None) -> dict:
    """Read and validate the plug-in config (``kadapt_config.json``; no weights touched)."""
    recover_folder(Path(directory))
    if not Path(directory).is_dir():
        raise PluginFormatError(f"{directory}: not a plug-in directory (no such folder)")
    path = config_file(directory)
    record = read_json(path, "plug-in config")
    for key in ("kind", "name", "format_version", "config", "backbone"):
        if key not in record:
            raise PluginFormatError(f"{path}: missing key {key!r}")
    if record["format_version"] not in SUPPORTED_FORMAT_VERSIONS:
        raise PluginFormatError(
            f"{path}: unknown format_version {record['format_version']!r}; this kadapt reads {list(SUPPORTED_FORMAT_VERSIONS)}"
        )
    plugin_class(record["kind"], source=f"{path}: key 'kind'")
    if expected_kind is not None and record["kind"] != expected_kind:
        raise PluginFormatError(f"{path}: kind is {record['kind']!r}, expected {expected_kind!r}")
    return record


def load_plugin(
    directory: str | Path,
    backbone=None,
    *,
    spec: BackboneSpec | None = None,
    expected_kind: str | None = None,
    check_fingerprint: bool = True,
) -> LoadedPlugin:
    """Strictly load a plug-in. Pass the ``FrozenBackbone`` it will run on (fingerprint checked).

    Errors (each names the file): missing/invalid config, unknown kind or format version, wrong kind,
    truncated/corrupt safetensors, metadata disagreeing with the config, missing or unexpected
    tensors, shape mismatches, and a backbone fingerprint that differs from the recorded one.
    """
    directory = Path(directory)
    record = read_record(directory, expected_kind)
    config_path = config_file(directory, note=False)
    recorded = Fingerprint.from_dict(record["backbone"], source=f"{config_path}: key 'backbone'")
    if backbone is not None:
        spec = backbone.spec
        if check_fingerprint:
            recorded.check_matches(backbone.fingerprint, source=str(config_path))
    if spec is None:
        raise PluginFormatError(f"{directory}: load_plugin needs a backbone (or a BackboneSpec)")
    plugin = build_plugin(record["kind"], record["config"], spec, source=f"{config_path}: key 'config'")

    weights_path = directory / WEIGHTS_FILE
    tensors, meta = load_tensors(weights_path)
    _check_metadata(weights_path, meta, record)
    _load_state_strict(plugin, tensors, weights_path)
    check_binding(weights_path, meta, record, config_path)
    heads = _optional_tensors(directory / HEADS_FILE, record, config_path)
    memory = _optional_tensors(directory / MEMORY_FILE, record, config_path)
    _check_folder(directory)
    plugin.eval()
    plugin.loaded_from, plugin.recorded_backbone = directory, recorded
    return LoadedPlugin(plugin, directory, record, recorded, heads, memory)


def _optional_tensors(path: Path, record: dict, config_path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        return {}
    tensors, meta = load_tensors(path)
    _check_metadata(path, meta, record)
    check_binding(path, meta, record, config_path)
    check_tensors(path, tensors)
    return tensors


def _check_folder(directory: Path) -> None:
    if not check_manifest(directory):
        log.info("%s: no %s (written by a kadapt before manifests); files not cross-checked",
                 directory, "manifest.json")


def _check_metadata(path: Path, meta: dict, record: dict) -> None:
    if meta.get("kind") != record["kind"]:
        raise PluginFormatError(f"{path}: metadata kind {meta.get('kind')!r} != config kind {record['kind']!r}")
    if meta.get("format_version") != str(record["format_version"]):
        raise PluginFormatError(
            f"{path}: metadata format_version {meta.get('format_version')!r} != config {record['format_version']!r}"
        )


def _load_state_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)})")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} ({len(unexpected)})")
        raise PluginFormatError(f"{path}: " + "; ".join(parts))
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise PluginFormatError(
                f"{path}: tensor {key!r} has shape {tuple(value.shape)}, the config builds {tuple(expected[key].shape)}"
            )
    check_tensors(path, tensors, expected)
    module.load_state_dict(tensors, strict=True)


def describe_plugin(directory: str | Path) -> dict:
    """Summary of a saved plug-in; verifies every tensor file is readable and complete."""
    directory = Path(directory)
    record = read_record(directory)
    config_path = config_file(directory, note=False)
    files = {}
    for name in (WEIGHTS_FILE, HEADS_FILE, MEMORY_FILE):
        path = directory / name
        if name == WEIGHTS_FILE or path.exists():
            tensors, meta = load_tensors(path)
            _check_metadata(path, meta, record)
            check_binding(path, meta, record, config_path)
            check_tensors(path, tensors)
            files[name] = {
                "tensors": len(tensors),
                "elements": int(sum(t.numel() for t in tensors.values())),
                "bytes": path.stat().st_size,
            }
    _check_folder(directory)
    return {
        "directory": str(directory),
        "kind": record["kind"],
        "name": record["name"],
        "format_version": record["format_version"],
        "parameters": files[WEIGHTS_FILE]["elements"],
        "config": record["config"],
        "backbone": record["backbone"],
        "objectives": record.get("objectives", []),
        "created_by": record.get("created_by"),
        "files": files,
    }


def render_card(record: dict, card: dict) -> str:
    """Markdown model card written beside the weights, under its metadata header (:mod:`kadapt.store.card`)."""
    from kadapt.store.card import card_header

    fp = record["backbone"]
    backbone_name = fp.get("name_or_path") or "<the backbone's hub name or folder>"
    revision = f", revision={fp['revision']!r}" if fp.get("revision") else ""
    lines = [
        card_header(name=record["name"], backbone=fp, tags=["knowledge-plugin", record["kind"]], card=card).rstrip("\n"),
        f"# {record['name']} ({record['kind']} plug-in)",
        "",
        card.get("summary", "A kadapt knowledge plug-in for a frozen encoder."),
        "",
        "## Backbone",
        f"- name: `{backbone_name}`" + (f" (Hub revision `{fp['revision']}`)" if fp.get("revision") else ""),
        f"- model type: {fp.get('model_type')}, hidden {fp.get('hidden_size')}, layers {fp.get('num_layers')}",
        f"- weights sha256: `{fp.get('weights_sha256')}`",
        f"- tokenizer sha256: `{fp.get('tokenizer_sha256')}`",
        "",
        "## Plug-in",
        f"- parameters: {record['parameters']:,}",
        f"- config: `{record['config']}`",
    ]
    if card.get("notes"):
        lines += [f"- {note}" for note in card["notes"]]
    lines += ["", "## Knowledge source and objective"]
    lines.append(f"- data: {card.get('data', 'not recorded')}")
    for objective in record.get("objectives", []):
        lines.append(f"- objective: {objective.get('name')}")
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics (held-out)"] + [f"- {k}: {v}" for k, v in metrics.items()]
    lines += [
        "",
        "## How to load",
        "```python",
        "from kadapt import KnowledgeModel",
        f"model = KnowledgeModel.from_pretrained({backbone_name!r}{revision}, plugins=['<this folder or repo id>'])",
        "```",
        "",
        f"Written by {record['created_by']}, plug-in format version {record['format_version']}.",
        "",
    ]
    return "\n".join(lines)
