"""The hidden-state cache as a run uses it (:func:`cached_split`), with one or several processes
(``accelerate launch`` / ``torchrun``): building an entry with several processes.

Every rank encodes its share of the build batches (batch ``i`` goes to the ``i % n``-th builder) into
one preallocated ``.partial`` folder; the leader writes the manifest and renames the folder into
place. Each batch is computed exactly as a one-process build computes it, so the finished entry is
byte-identical to a single-process build.

Where the cache lives (``training.cache_dir``, same path string on every rank):

* **shared** filesystem (every rank sees the folder rank 0 writes): all ranks build one entry
  together; rank 0 leads.
* **node-local** folders (e.g. ``/local_scratch``, same path on every node, each node sees only its
  own): each node builds its own copy with its local ranks; local rank 0 of each node leads.

The ranks first agree on the entry: a different cache key (other data, backbone or settings) or a
different ``cache_dir`` path on some rank, or a folder shared by only some of the nodes, is a
one-line error before anything is written.
"""
from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from kadapt.core import distributed as dist
from kadapt.core.errors import KadaptError
from kadapt.store.hidden_cache import (CacheKey, CachedCollate, StateCache, _check_entry, _mark_used, _read_layers,
                                       allocate, default_cache_dir, encode_into, estimate_bytes, finish, open_or_build,
                                       with_rows)

log = logging.getLogger(__name__)


class CacheDisagreementError(KadaptError):
    """Ranks of one run disagree about a hidden-state cache entry."""


def _agree(views: list[dict], what: str) -> None:
    first = views[0]
    for rank, view in enumerate(views):
        if view["cache_dir"] != first["cache_dir"]:
            raise CacheDisagreementError(
                f"{what}: ranks disagree about the hidden-state cache entry: rank 0 uses training.cache_dir "
                f"{first['cache_dir']}, rank {rank} uses {view['cache_dir']}; give every rank the same path "
                "(one shared folder, or the same node-local path on every node)")
        if view["key"] != first["key"]:
            raise CacheDisagreementError(
                f"{what}: ranks disagree about the hidden-state cache entry: rank 0 computed key {first['key'][:12]}, "
                f"rank {rank} key {view['key'][:12]} (different data, backbone, max_length or cache_dtype per rank)")


def _builders(root: Path, what: str) -> tuple[int, int, bool]:
    """(my builder index, builders in my group, I lead) after probing who shares ``root`` with rank 0."""
    token = dist.all_gather_json(secrets.token_hex(8))[0]
    probe = root / f".kadapt-probe-{token}"
    if dist.rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text("probe", encoding="utf-8")
    dist.barrier()
    sees = dist.all_gather_json(probe.exists())
    dist.barrier()
    if dist.rank() == 0:
        probe.unlink(missing_ok=True)
    if all(sees):
        return dist.rank(), dist.world_size(), dist.rank() == 0
    node_zero = list(range(dist.local_world_size()))
    if [r for r, seen in enumerate(sees) if seen] != node_zero:
        raise CacheDisagreementError(
            f"{what}: training.cache_dir {root} is shared by ranks {[r for r, s in enumerate(sees) if s]} but not "
            f"by ranks {[r for r, s in enumerate(sees) if not s]}; use one folder all nodes share, or a node-local "
            "folder on every node")
    return dist.local_rank(), dist.local_world_size(), dist.local_rank() == 0


def open_or_build_distributed(backbone, examples: Sequence[dict], layers, key: CacheKey,
                              cache_dir: str | Path | None = None, *, batch_size: int = 32, pad_id: int = 0,
                              what: str = "data") -> StateCache:
    """:func:`kadapt.store.hidden_cache.open_or_build` with every rank of the process group taking part
    (call it on every rank)."""
    root = (Path(cache_dir) if cache_dir else default_cache_dir()).absolute()
    folder = root / key.digest[:32]
    _agree(dist.all_gather_json({"cache_dir": str(root), "key": key.digest}), what)
    shard, shards, leader = _builders(root, what)
    layers = sorted({int(k) for k in layers})
    manifest, why = _check_entry(folder, key, layers)
    needs = dist.all_gather_json(manifest is None)
    if any(needs):
        layers = sorted(set(layers) | set(_read_layers(folder)))  # same on every rank of a group
        pids = dist.all_gather_json(os.getpid())
        leader_pid = pids[dist.rank() - shard]  # a group's builders are consecutive ranks, leader first
        tmp = folder.parent / f"{folder.name}.partial-{leader_pid}"
        if manifest is None and leader:
            log.warning("%s: building hidden-state cache with %d processes (%s): %s, %.1f MB on disk", what, shards,
                        why, folder, estimate_bytes(examples, layers, backbone.spec.hidden_size, key.dtype) / 1e6)
            allocate(backbone, examples, layers, key, folder, leader_pid)
        dist.barrier()
        if manifest is None:
            encode_into(tmp, backbone, examples, layers, key, batch_size=batch_size, pad_id=pad_id,
                        shard=shard, shards=shards)
        dist.barrier()
        if manifest is None and leader:
            finish(tmp, folder, backbone, examples, layers, key)
        dist.barrier()
        manifest, why = _check_entry(folder, key, layers)
        if manifest is None:
            raise KadaptError(f"hidden-state cache {folder} is invalid right after building it: {why}")
    else:
        log.info("%s: reading hidden states from cache %s", what, folder)
        _mark_used(folder)
    return StateCache(folder, manifest)


def cached_split(backbone, layers: Iterable[int], examples: list[dict], data_files: Iterable[str | Path | None],
                 max_length: int, config, pad_id: int, what: str, accelerator=None) -> tuple[list[dict], CachedCollate]:
    """Examples tagged with cache rows + the collate that reads their states (``config``: TrainConfig).

    Under several processes every rank encodes its share of the entry (:func:`open_or_build_distributed`);
    ``accelerator`` is accepted for compatibility."""
    key = CacheKey.for_data(backbone, examples, data_files, max_length, config.cache_dtype)
    build = open_or_build_distributed if dist.active() else open_or_build
    cache = build(backbone, examples, layers, key, config.cache_dir, batch_size=config.batch_size, pad_id=pad_id,
                  what=what)
    return with_rows(examples), CachedCollate(cache, layers, pad_id)
