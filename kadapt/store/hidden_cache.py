"""Hidden-state cache: backbone states of a data split, computed once, memory-mapped for reuse.

The backbone is frozen and in eval mode, so its hidden states are a pure function of (backbone
weights, tokenizer, token ids). For outside plug-ins the states they read (plus the last one, the
features' first part) are stored once per data split; later epochs, other plug-ins and dev evaluation
read them instead of running the backbone.

Layout of one entry, ``<cache_dir>/<key[:32]>/``::

    lengths.i32        int32 [n]                   tokens per example (no padding stored)
    layer_<k>.bin      fp16/bf16/fp32 [total, H]   hidden state k of every example, concatenated
    manifest.json      key fields, layers, sizes   written LAST: an entry without it is incomplete

The key is the sha256 over the backbone fingerprint (weights + tokenizer sha256), the data files'
sha256, ``max_length``, the sha256 of the encoded token ids (in order), the storage dtype and
:data:`CACHE_FORMAT`. An entry whose manifest disagrees with the key, whose layers do not cover the
request or whose files have the wrong size is rebuilt (with a logged reason), never reused. A build
writes into ``<key>.partial-<pid>`` and renames it into place, so a crash leaves a ``.partial`` folder
that the next build (or ``kadapt cache clear``) removes and ``kadapt cache info`` reports.
Files are raw arrays read with ``numpy.memmap``; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kadapt.data.encoding import collate
from kadapt.core.errors import KadaptError
from kadapt.core.fileio import atomic_write_json
from kadapt.core.model import STATE_PREFIX, states_from_batch  # noqa: F401  (batches carry states under it)

log = logging.getLogger(__name__)

#: bump when the layout or the meaning of the stored states changes
CACHE_FORMAT = 1
MANIFEST = "manifest.json"
ROW_KEY = "cache_row"
#: batch key prefix of cached states handed to ``KnowledgeModel`` (``hidden_state.11``)

# torch dtype name -> (numpy storage dtype, torch dtype); bf16 is stored as raw int16 bits
_STORAGE = {
    "float16": (np.float16, torch.float16),
    "bfloat16": (np.int16, torch.bfloat16),
    "float32": (np.float32, torch.float32),
}


def storage(dtype: str) -> tuple[type, torch.dtype]:
    """(numpy storage dtype, torch dtype) of a cache dtype name; a clear error for unknown names."""
    if dtype not in _STORAGE:
        raise KadaptError(f"cache dtype {dtype!r} unknown; use one of {sorted(_STORAGE)}")
    return _STORAGE[dtype]


def default_cache_dir() -> Path:
    """``$KADAPT_CACHE_DIR``, else ``~/.cache/kadapt/hidden_states``."""
    env = os.environ.get("KADAPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kadapt" / "hidden_states"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, or of every file under a folder (relative names + contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def ids_sha256(examples: Sequence[dict]) -> str:
    """sha256 of the encoded token ids, in order (what the stored states are a function of)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(np.asarray(example["input_ids"], dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """Everything the stored states depend on; ``digest`` names the entry."""

    weights_sha256: str
    tokenizer_sha256: str | None
    data_sha256: str
    max_length: int
    ids_sha256: str
    dtype: str
    format: int = CACHE_FORMAT

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def for_data(cls, backbone, examples: Sequence[dict], data_files: Iterable[str | Path | None],
                 max_length: int, dtype: str = "float16") -> CacheKey:
        storage(dtype)
        fingerprint = backbone.fingerprint
        if fingerprint.weights_sha256 is None:
            raise KadaptError("cannot cache the states of a backbone without weights (meta device)")
        files = "|".join(file_sha256(f) for f in data_files if f is not None)
        return cls(fingerprint.weights_sha256, fingerprint.tokenizer_sha256,
                   hashlib.sha256(files.encode()).hexdigest(), int(max_length), ids_sha256(examples), dtype)


def estimate_bytes(examples: Sequence[dict], layers: Sequence[int], hidden: int, dtype: str) -> int:
    """Disk use of an entry: tokens × hidden × layers × bytes per value (+ lengths)."""
    tokens = sum(len(e["input_ids"]) for e in examples)
    return tokens * hidden * len(layers) * np.dtype(storage(dtype)[0]).itemsize + 4 * len(examples)


class StateCache:
    """A complete, validated entry opened read-only (memory-mapped lazily, per process)."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        self.layers: list[int] = list(manifest["layers"])
        self.hidden: int = manifest["hidden_size"]
        self.lengths = np.fromfile(folder / "lengths.i32", dtype=np.int32).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self._storage, self._torch_dtype = _STORAGE[manifest["key"]["dtype"]]
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def __getstate__(self) -> dict:  # DataLoader workers re-open their own maps
        return {**self.__dict__, "_maps": {}}

    def _map(self, layer: int) -> np.memmap:
        if layer not in self._maps:
            self._maps[layer] = np.memmap(self.folder / f"layer_{layer:03d}.bin", dtype=self._storage, mode="r",
                                          shape=(int(self.offsets[-1]), self.hidden))
        return self._maps[layer]

    def states(self, rows: Sequence[int], layers: Iterable[int], width: int | None = None) -> dict[int, torch.Tensor]:
        """Right-padded states ``{layer: (len(rows), width, H)}`` in the storage dtype (zeros at padding)."""
        width = width or int(max(self.lengths[r] for r in rows))
        out = {}
        for layer in layers:
            buffer = np.zeros((len(rows), width, self.hidden), dtype=self._storage)
            source = self._map(layer)
            for i, row in enumerate(rows):
                start, length = int(self.offsets[row]), int(self.lengths[row])
                buffer[i, :length] = source[start:start + length]
            out[layer] = torch.from_numpy(buffer).view(self._torch_dtype)
        return out


def _check_entry(folder: Path, key: CacheKey, layers: Sequence[int]) -> tuple[dict | None, str]:
    """(manifest, "") when the entry at ``folder`` is complete and serves ``layers``; else (None, why)."""
    if not folder.is_dir():
        return None, "no cache yet"
    path = folder / MANIFEST
    if not path.exists():
        return None, f"{folder} has no {MANIFEST} (incomplete build)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"{path} is unreadable ({err})"
    if manifest.get("key") != key.to_dict():
        recorded = manifest.get("key") or {}
        diffs = [f"{k}: {recorded.get(k)!r} != {v!r}" for k, v in key.to_dict().items() if recorded.get(k) != v]
        return None, f"{path}: key differs ({'; '.join(diffs)})"
    missing = sorted(set(layers) - set(manifest["layers"]))
    if missing:
        return None, f"{path}: layers {manifest['layers']} lack {missing}"
    itemsize = np.dtype(_STORAGE[key.dtype][0]).itemsize
    sizes = {"lengths.i32": 4 * manifest["examples"]}
    sizes.update({f"layer_{k:03d}.bin": manifest["tokens"] * manifest["hidden_size"] * itemsize
                  for k in manifest["layers"]})
    for name, size in sizes.items():
        actual = (folder / name).stat().st_size if (folder / name).exists() else -1
        if actual != size:
            return None, f"{folder / name}: {actual} bytes, expected {size} (truncated or corrupt)"
    return manifest, ""


def open_or_build(backbone, examples: Sequence[dict], layers: Iterable[int], key: CacheKey,
                  cache_dir: str | Path | None = None, *, batch_size: int = 32, pad_id: int = 0,
                  what: str = "data") -> StateCache:
    """The entry for ``key`` serving ``layers``; built (or rebuilt, saying why) when needed."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / key.digest[:32]
    layers = sorted({int(k) for k in layers})
    manifest, why = _check_entry(folder, key, layers)
    if manifest is not None:
        log.info("%s: reading hidden states from cache %s", what, folder)
        _mark_used(folder)
        return StateCache(folder, manifest)
    old = _read_layers(folder)
    layers = sorted(set(layers) | set(old))  # a rebuild keeps what the old entry served
    log.warning("%s: building hidden-state cache (%s): %s, %.1f MB on disk", what, why, folder,
                estimate_bytes(examples, layers, backbone.spec.hidden_size, key.dtype) / 1e6)
    build(backbone, examples, layers, key, folder, batch_size=batch_size, pad_id=pad_id)
    manifest, why = _check_entry(folder, key, layers)
    if manifest is None:
        raise KadaptError(f"hidden-state cache {folder} is invalid right after building it: {why}")
    return StateCache(folder, manifest)


def _mark_used(folder: Path) -> None:
    """The folder's mtime is the entry's last use (``kadapt cache prune`` removes least recently used)."""
    try:
        os.utime(folder)
    except OSError:  # a read-only shared cache: recency is simply not recorded
        pass


def _read_layers(folder: Path) -> list[int]:
    try:
        return list(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def build(backbone, examples: Sequence[dict], layers: Sequence[int], key: CacheKey, folder: Path, *,
          batch_size: int = 32, pad_id: int = 0) -> Path:
    """Run the backbone once over ``examples`` (length-sorted batches) and write the entry atomically."""
    tmp = allocate(backbone, examples, layers, key, folder, os.getpid())
    encode_into(tmp, backbone, examples, layers, key, batch_size=batch_size, pad_id=pad_id)
    return finish(tmp, folder, backbone, examples, layers, key)


def allocate(backbone, examples: Sequence[dict], layers: Sequence[int], key: CacheKey, folder: Path,
             owner_pid: int) -> Path:
    """The ``<entry>.partial-<owner_pid>`` build folder with ``lengths.i32`` and zero-filled layer files."""
    if not examples:
        raise KadaptError(f"nothing to cache for {folder}: no examples")
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    remove_partials(root, folder.name)
    needed = estimate_bytes(examples, layers, backbone.spec.hidden_size, key.dtype)
    free = shutil.disk_usage(root).free
    if needed > free:
        raise KadaptError(f"hidden-state cache needs {needed / 1e9:.2f} GB but {root} has {free / 1e9:.2f} GB free")
    tmp = root / f"{folder.name}.partial-{owner_pid}"
    tmp.mkdir()
    lengths = np.asarray([len(e["input_ids"]) for e in examples], dtype=np.int32)
    lengths.tofile(tmp / "lengths.i32")
    total, np_dtype = int(lengths.astype(np.int64).sum()), storage(key.dtype)[0]
    for k in layers:
        np.memmap(tmp / f"layer_{k:03d}.bin", dtype=np_dtype, mode="w+", shape=(total, backbone.spec.hidden_size)).flush()
    return tmp


def build_batches(examples: Sequence[dict], batch_size: int) -> list[list[int]]:
    """The rows of each build batch: length-sorted (stable), ``batch_size`` at a time."""
    lengths = np.asarray([len(e["input_ids"]) for e in examples], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    return [order[start:start + batch_size].tolist() for start in range(0, len(order), batch_size)]


def encode_into(tmp: Path, backbone, examples: Sequence[dict], layers: Sequence[int], key: CacheKey, *,
                batch_size: int = 32, pad_id: int = 0, shard: int = 0, shards: int = 1) -> None:
    """Encode build batches ``shard, shard + shards, ...`` into the allocated files of ``tmp`` (each
    batch is computed exactly as a one-process build computes it, so the bytes do not depend on the
    number of processes)."""
    lengths = np.asarray([len(e["input_ids"]) for e in examples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np_dtype, torch_dtype = storage(key.dtype)
    maps = {k: np.memmap(tmp / f"layer_{k:03d}.bin", dtype=np_dtype, mode="r+",
                         shape=(int(offsets[-1]), backbone.spec.hidden_size)) for k in layers}
    for rows in build_batches(examples, batch_size)[shard::shards]:
        batch = collate([{"input_ids": examples[r]["input_ids"]} for r in rows], pad_id)
        device = backbone.device
        states = backbone.encode(batch["input_ids"].to(device), batch["attention_mask"].to(device), layers)
        for k in layers:
            values = states[k].to(torch_dtype).cpu()
            if torch_dtype is torch.bfloat16:
                values = values.view(torch.int16)
            values = values.numpy()
            for i, r in enumerate(rows):
                maps[k][offsets[r]:offsets[r + 1]] = values[i, :lengths[r]]
    for memmap in maps.values():
        memmap.flush()


def finish(tmp: Path, folder: Path, backbone, examples: Sequence[dict], layers: Sequence[int], key: CacheKey) -> Path:
    """Write the manifest (last) and switch the build folder into place."""
    atomic_write_json(tmp / MANIFEST, {
        "key": key.to_dict(), "layers": list(layers), "hidden_size": backbone.spec.hidden_size,
        "examples": len(examples), "tokens": int(sum(len(e["input_ids"]) for e in examples)),
        "backbone": backbone.name, "created_by": _created_by()})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def _created_by() -> str:
    from kadapt.core.version import __version__

    return f"kadapt {__version__}"


def remove_partials(root: Path, name: str | None = None) -> list[Path]:
    """Delete leftover ``.partial-*`` build folders (all, or those of entry ``name``)."""
    removed = []
    for path in sorted(Path(root).glob(f"{name or '*'}.partial-*")):
        if _build_in_progress(path):
            continue
        log.warning("removing incomplete hidden-state cache build %s (interrupted earlier)", path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _build_in_progress(path: Path) -> bool:
    """A ``.partial-<pid>`` folder whose process is still alive (another run building it right now)."""
    try:
        pid = int(path.name.rsplit("-", 1)[1])
        if pid == os.getpid():
            return False
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def describe(cache_dir: str | Path | None = None) -> dict:
    """Entries under ``cache_dir`` with their size and state (complete / incomplete / partial build)."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        entry = {"entry": folder.name, "bytes": size}
        if ".partial-" in folder.name and _build_in_progress(folder):
            entry["state"] = "being built by a running process"
        elif ".partial-" in folder.name:
            entry["state"] = "partial build (interrupted); removed by the next build or `kadapt cache clear`"
        elif not (folder / MANIFEST).exists():
            entry["state"] = f"incomplete (no {MANIFEST}); rebuilt on next use"
        else:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            key = CacheKey(**manifest["key"])
            _, why = _check_entry(folder, key, manifest["layers"])
            entry.update(state="complete" if not why else f"corrupt: {why}", backbone=manifest.get("backbone"),
                         layers=manifest["layers"], examples=manifest["examples"], tokens=manifest["tokens"],
                         dtype=key.dtype, max_length=key.max_length)
        entries.append(entry)
    return {"cache_dir": str(root), "entries": entries, "bytes": sum(e["bytes"] for e in entries)}


def clear(cache_dir: str | Path | None = None) -> int:
    """Delete every entry (complete or not) under ``cache_dir``; returns bytes freed."""
    info = describe(cache_dir)
    for entry in info["entries"]:
        shutil.rmtree(Path(info["cache_dir"]) / entry["entry"], ignore_errors=True)
    return info["bytes"]


def with_rows(examples: Sequence[dict]) -> list[dict]:
    """Examples tagged with their cache row (the collate of :class:`CachedCollate` reads it)."""
    return [{**example, ROW_KEY: row} for row, example in enumerate(examples)]


class CachedCollate:
    """Collate examples tagged by :func:`with_rows` and attach their cached states (``hidden_state.k``)."""

    def __init__(self, cache: StateCache, layers: Iterable[int], pad_id: int):
        self.cache, self.layers, self.pad_id = cache, sorted(set(layers)), pad_id

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        rows = [f[ROW_KEY] for f in features]
        batch = collate([{k: v for k, v in f.items() if k != ROW_KEY} for f in features], self.pad_id)
        width = batch["input_ids"].shape[1]
        for layer, states in self.cache.states(rows, self.layers, width).items():
            batch[f"{STATE_PREFIX}{layer}"] = states
        return batch
