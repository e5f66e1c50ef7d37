"""Several plug-ins infused in one run: one backbone pass per batch feeds them all.

``kadapt infuse A.yaml B.yaml`` trains each recipe's plug-in with its own objective, optimizer,
scheduler, RNG stream and run folder; the only thing they share is the frozen backbone's output on
the same batch (or the same hidden-state cache). No information flows between plug-ins: each loss
backpropagates into its own plug-in and head only, and each plug-in's dropout draws from its own
generator state. The result is the same as separate ``kadapt infuse`` runs with the same seeds
(bit-identical weights and loss curves; ``tests/runs/test_joint.py``). It runs through the one
training loop (:func:`kadapt.runs.loop.train_members`) and ``KnowledgeModel.forward``, so plug-in and
objective hooks act as in a separate run. Only plug-ins whose output depends on nothing but the shared
states (``Plugin.reads_shared_states_only``) can join; any other is refused before any work.

Sharing the data stream is what makes one backbone pass serve every plug-in, so the recipes must agree
on the backbone, the whole ``data`` section and the fields that decide the batch order
(:data:`STREAM_FIELDS`); anything else (plug-in kind and config, objective, learning rate, warm-up,
clipping, output folder) may differ. Recipes on different data cannot share a pass: run them
separately (``training.cache: true`` then still saves every epoch after the first).
Every objective must encode the records into the same token ids (e.g. several relation
classification plug-ins, or objectives on records that carry both annotations).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kadapt.core.errors import KadaptError
from kadapt.core.folders import check_name
from kadapt.core.family import plugin_class
from kadapt.core.model import STATE_PREFIX, KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.runs.context import data_seed, encode_records, load_backbone, prepare_run_dir, read_splits
from kadapt.runs.infuse import (STANDARD_PIPELINE, InfusionResult, cache_splits, pipeline_for, reserve_zoo_name,
                                save_infused)
from kadapt.runs.loop import Member, make_accelerator, train_members
from kadapt.runs.recipe import Recipe

log = logging.getLogger(__name__)

#: training fields that decide which examples form each batch; joint recipes must agree on them
STREAM_FIELDS = ("seed", "batch_size", "epochs", "max_steps", "grad_accum", "length_bucketing", "cache",
                 "cache_dir", "cache_dtype", "mixed_precision", "cpu", "num_workers", "eval_every")


def check_shared_stream(recipes: Sequence[Recipe]) -> None:
    """Raise naming both recipes and the field when they cannot share one backbone pass per batch."""
    first = recipes[0]
    for other in recipes[1:]:
        pairs = [("backbone", asdict(first.backbone), asdict(other.backbone)),
                 ("data", asdict(first.data), asdict(other.data))]
        pairs += [(f"training.{f}", getattr(first.training, f), getattr(other.training, f)) for f in STREAM_FIELDS]
        for name, mine, theirs in pairs:
            if isinstance(mine, dict):
                diff = [k for k in mine if mine[k] != theirs[k]]
                if diff:
                    name, mine, theirs = f"{name}.{diff[0]}", mine[diff[0]], theirs[diff[0]]
                else:
                    continue
            if mine != theirs:
                raise KadaptError(
                    f"{first.source} and {other.source} cannot share one backbone pass per batch: {name} is "
                    f"{mine!r} vs {theirs!r} (joint recipes need the same backbone, data and batch order; "
                    "run them separately, with training.cache: true to reuse backbone states across epochs)")
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise KadaptError(f"joint infusion needs distinct recipe names, got {names}")


def check_can_join(recipes: Sequence[Recipe]) -> None:
    """One line naming the recipe whose plug-in family cannot share a backbone pass."""
    for recipe in recipes:
        cls = plugin_class(recipe.plugin.kind, f"{recipe.source}: plugin.kind")
        if not cls.reads_shared_states_only or pipeline_for(recipe.plugin.kind) is not STANDARD_PIPELINE:
            raise KadaptError(
                f"{recipe.source}: a {recipe.plugin.kind!r} plug-in cannot join a joint run (it attaches "
                f"{cls.placement!r}: its output depends on more than the shared backbone states); infuse it on its own")


@dataclass
class JointMember:
    """One recipe of a joint run: its model and encoded data."""

    recipe: Recipe
    model: KnowledgeModel
    train_set: list[dict]
    dev_set: list[dict]


def prepare_members(recipes: Sequence[Recipe], backbone=None, device="cpu") -> tuple[object, list[JointMember]]:
    """Backbone, data read once, and one :class:`JointMember` per recipe (built exactly as
    :func:`kadapt.runs.infuse.infuse` builds it, same seeding); recipes must share the stream."""
    check_shared_stream(recipes)
    check_can_join(recipes)
    lead = recipes[0]
    backbone = (backbone or load_backbone(lead.backbone)).to(device)
    policy = ErrorPolicy(lead.data.on_error)
    splits = read_splits(lead.data, data_seed(lead), policy)
    members = []
    for recipe in recipes:
        model = STANDARD_PIPELINE.build(recipe, backbone, splits)
        tok, max_len = backbone.tokenizer, recipe.data.max_length
        train_set, _ = encode_records(model.head, splits.train, tok, max_len, policy, f"{recipe.name} train")
        dev_set, _ = encode_records(model.head, splits.dev, tok, max_len, policy, f"{recipe.name} dev")
        members.append(JointMember(recipe, model, train_set, dev_set))
    for split in ("train", "dev"):
        _check_same_ids(members, split)
    return backbone, members


def _check_same_ids(members: Sequence[JointMember], split: str) -> None:
    first = members[0]
    for other in members[1:]:
        mine, theirs = (first.train_set, other.train_set) if split == "train" else (first.dev_set, other.dev_set)
        same = len(mine) == len(theirs) and all(a["input_ids"] == b["input_ids"] for a, b in zip(mine, theirs))
        if not same:
            raise KadaptError(
                f"{first.recipe.source} and {other.recipe.source}: objectives {first.model.head.name!r} and "
                f"{other.model.head.name!r} encode the {split} records into different token ids "
                f"({len(mine)} vs {len(theirs)} examples); one backbone pass cannot serve both")


class SharedCacheBatches:
    """Loader collate of a cached joint run: the cached states are read once per batch (through the
    first member's cached collate) and attached to every member's padded batch."""

    def __init__(self, members: Sequence[Member], cached, pad_id: int):
        self.sets, self.cached, self.pad_id = [m.train_set for m in members], cached, pad_id

    def __call__(self, rows: list[int]) -> list[dict]:
        first = self.cached([self.sets[0][i] for i in rows])
        states = {k: v for k, v in first.items() if k.startswith(STATE_PREFIX)}
        rest = [{**collate([s[i] for i in rows], self.pad_id), **states} for s in self.sets[1:]]
        return [first, *rest]


def infuse_many(recipes: Sequence[Recipe], *, out: str | Path | None = None, backbone=None,
                resume: bool = False, overwrite: bool = False) -> list[InfusionResult]:
    """Infuse every recipe's plug-in in one run (see module doc); ``out`` = parent of the run folders."""
    recipes = list(recipes)
    if not recipes:
        raise KadaptError("infuse_many needs at least one recipe")
    if resume:
        raise KadaptError("--resume is not supported for a joint run of several recipes; resume them one by one")
    check_shared_stream(recipes)  # before the zoo check and any work
    check_can_join(recipes)
    run_dirs = [Path(out) / check_name(r.name, f"{r.source}: key 'name'", out) if out else None for r in recipes]
    for recipe in recipes:
        reserve_zoo_name(recipe)
    accelerator = make_accelerator(recipes[0].training)
    if accelerator.num_processes > 1:
        raise KadaptError("a joint run of several recipes runs in one process; launch it without accelerate")
    run_dirs = [prepare_run_dir(r, d, overwrite=overwrite) for r, d in zip(recipes, run_dirs)]
    backbone, joint = prepare_members(recipes, backbone, accelerator.device)
    members = [Member(j.model, j.train_set, j.dev_set, j.recipe.training, d) for j, d in zip(joint, run_dirs)]
    pad_id = backbone.tokenizer.pad_token_id
    rows_collate = _attach_cache(joint, members, pad_id) if recipes[0].training.cache else None
    results = train_members(members, pad_id=pad_id, accelerator=accelerator, rows_collate=rows_collate)
    outputs = []
    for member, result, j in zip(members, results, joint):
        plugin_dir, zoo_entry = save_infused(member.model, STANDARD_PIPELINE, j.recipe, result,
                                             member.run_dir / "plugin", overwrite=overwrite)
        outputs.append(InfusionResult(plugin_dir, member.run_dir, result, zoo_entry))
    return outputs


def _attach_cache(joint: Sequence[JointMember], members: Sequence[Member], pad_id: int) -> SharedCacheBatches:
    """One cache entry with the union of the members' layers; every member reads its dev states from it."""
    from kadapt.store.hidden_cache import CachedCollate

    lead = joint[0]
    union = KnowledgeModel(lead.model.backbone, [p for j in joint for p in j.model.plugins])
    train_rows, dev_rows, collates = cache_splits(union, lead.recipe, lead.train_set, lead.dev_set)
    members[0].train_set = train_rows
    if "dev_collate_fn" in collates:
        dev_cache = collates["dev_collate_fn"].cache
        for member in members:
            member.dev_set = [{**e, "cache_row": r["cache_row"]} for e, r in zip(member.dev_set, dev_rows)]
            member.dev_collate_fn = CachedCollate(dev_cache, union.required_layers(), pad_id)
    return SharedCacheBatches(members, collates["collate_fn"], pad_id)
