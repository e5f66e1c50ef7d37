"""The plug-in catalog: a folder of plug-in folders (``adapters_zoo/`` by default).

Each entry is one plug-in directory in the common format. The catalog is derived from the folders
themselves (no index to drift out of date) and groups entries by backbone fingerprint. Adding never
overwrites an existing entry (continual infusion: earlier plug-ins stay byte-identical), and names
are plain folder names that cannot escape the zoo folder (:func:`kadapt.core.folders.check_name`).

Concurrent writers: a run reserves its entry name BEFORE training (an exclusive ``flock`` on
``.NAME.lock``, held by the process and released by the OS if it dies), so a second run of the same
name is refused up front with one line. The entry is copied into a unique staging folder and switched
in with one rename, which also refuses if another writer's entry appeared: exactly one add wins.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from kadapt.core.errors import KadaptError, PluginFormatError

try:
    import fcntl
except ImportError:  # not POSIX: no reservation lock; the final rename still lets only one add win
    fcntl = None
from kadapt.core.folders import FolderExistsError, check_name, clean_stale, publish_folder, staging_path
from kadapt.store.plugin_dir import describe_plugin, has_plugin_config, read_record

_HELD: dict[str, int] = {}  # lock file -> open descriptor holding the reservation in this process


def default_zoo_dir() -> Path:
    return Path("adapters_zoo")


class Zoo:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_zoo_dir()

    def path_of(self, name: str) -> Path:
        """The folder of entry ``name``; rejects names that could leave the zoo (``..``, ``/``)."""
        check_name(name, "zoo name", self.root)
        path = (self.root / name).resolve()
        if path.parent != self.root.resolve():
            raise KadaptError(f"zoo name {name!r} escapes the zoo folder {self.root}")
        return path

    def entries(self) -> list[dict]:
        """One summary per valid entry (from kadapt_config.json; weights not read)."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.root.iterdir()
                             if not p.name.startswith(".") and has_plugin_config(p)):  # skip staging
            try:
                self.path_of(folder.name)  # list only what `zoo show` accepts (no symlinks out, odd names)
                record = read_record(folder)
            except (PluginFormatError, KadaptError) as err:
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
        if not has_plugin_config(path):
            raise KadaptError(f"zoo {self.root}: no entry named {name!r} (have: {[e['name'] for e in self.entries()]})")
        return describe_plugin(path)

    def require_new(self, name: str) -> Path:
        """The folder a new entry ``name`` would get; an error if the name is invalid or taken."""
        target = self.path_of(name)
        if target.exists():
            raise FolderExistsError(f"zoo entry {target} already exists; infuse under a new name "
                                    "(existing plug-ins are never overwritten)")
        return target

    def reserve(self, name: str) -> Path:
        """Check ``name`` is free and hold it for this process until :meth:`add` (or :meth:`release`)."""
        target = self.require_new(name)
        lock = self.root.resolve() / f".{name}.lock"
        if str(lock) in _HELD:
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderExistsError(f"zoo entry {target} is being written by another run right now; "
                                    "infuse under a new name") from None
        _HELD[str(lock)] = fd
        try:
            self.require_new(name)  # the holder before us may have just published it
        except KadaptError:
            self.release(name)
            raise
        return target

    def release(self, name: str, *, published: bool = False) -> None:
        lock = self.root.resolve() / f".{name}.lock"
        fd = _HELD.pop(str(lock), None)
        if fd is not None:
            if published:
                lock.unlink(missing_ok=True)
            os.close(fd)

    def add(self, plugin_dir: str | Path, name: str) -> Path:
        """Copy a plug-in folder in as a new entry; an existing entry is never overwritten."""
        held = str(self.root.resolve() / f".{name}.lock") in _HELD
        target = self.reserve(name)
        published = False
        try:
            describe_plugin(plugin_dir)  # validates every file before it enters the catalog
            clean_stale(target)
            staging = staging_path(target)
            shutil.copytree(plugin_dir, staging)
            publish_folder(staging, target, overwrite=False, what="zoo entry")
            published = True
        finally:
            if published or not held:
                self.release(name, published=published)
        return target
