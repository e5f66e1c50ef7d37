"""The plug-in catalog: a folder of plug-in folders (``adapters_zoo/`` by default).

Each entry is one plug-in directory in the common format. The catalog is derived from the folders
themselves (no index to drift out of date) and groups entries by backbone fingerprint. Adding never
overwrites an existing entry (continual infusion: earlier plug-ins stay byte-identical), and names
are plain folder names that cannot escape the zoo folder.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.store.plugin_dir import CONFIG_FILE, describe_plugin, read_record

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_zoo_dir() -> Path:
    return Path("adapters_zoo")


class Zoo:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_zoo_dir()

    def path_of(self, name: str) -> Path:
        """The folder of entry ``name``; rejects names that could leave the zoo (``..``, ``/``)."""
        if not _NAME.match(name) or name in (".", ".."):
            raise KadaptError(f"zoo name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
                              "(no path separators, not starting with '.')")
        path = (self.root / name).resolve()
        if path.parent != self.root.resolve():
            raise KadaptError(f"zoo name {name!r} escapes the zoo folder {self.root}")
        return path

    def entries(self) -> list[dict]:
        """One summary per valid entry (from adapter_config.json; weights not read)."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.root.iterdir()
                             if not p.name.startswith(".") and (p / CONFIG_FILE).is_file()):  # skip staging
            try:
                record = read_record(folder)
            except PluginFormatError as err:
                out.append({"name": folder.name, "error": str(err)})
                continue
            out.append({
                "name": folder.name,
                "kind": record["kind"],
                "plugin_name": record["name"],
                "parameters": record.get("parameters"),
                "objectives": [o.get("name") for o in record.get("objectives", [])],
                "backbone": record["backbone"],
                "path": str(folder),
            })
        return out

    def by_backbone(self) -> dict[str, list[str]]:
        """Which plug-ins exist for which backbone (keyed by weights sha256, or model type on meta)."""
        groups: dict[str, list[str]] = {}
        for entry in self.entries():
            if "error" in entry:
                continue
            fp = entry["backbone"]
            key = fp.get("weights_sha256") or f"{fp.get('model_type')}-{fp.get('hidden_size')}x{fp.get('num_layers')}"
            groups.setdefault(key, []).append(entry["name"])
        return groups

    def show(self, name: str) -> dict:
        path = self.path_of(name)
        if not (path / CONFIG_FILE).exists():
            raise KadaptError(f"zoo {self.root}: no entry named {name!r} (have: {[e['name'] for e in self.entries()]})")
        return describe_plugin(path)

    def require_new(self, name: str) -> Path:
        """The folder a new entry ``name`` would get; an error if the name is invalid or taken."""
        target = self.path_of(name)
        if target.exists():
            raise KadaptError(f"zoo entry {target} already exists; infuse under a new name "
                              "(existing plug-ins are never overwritten)")
        return target

    def add(self, plugin_dir: str | Path, name: str) -> Path:
        """Copy a plug-in folder in as a new entry; an existing entry is never overwritten."""
        target = self.require_new(name)
        describe_plugin(plugin_dir)  # validates every file before it enters the catalog
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(plugin_dir, staging)
        staging.rename(target)
        return target
