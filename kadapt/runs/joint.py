"""Several plug-ins infused in one run: one backbone pass per batch feeds them all.

``kadapt infuse A.yaml B.yaml`` trains each recipe's plug-in with its own objective, optimizer,
scheduler, RNG stream and run folder; the only thing they share is the frozen backbone's output on
the same batch (or the same hidden-state cache). No information flows between plug-ins: each loss
backpropagates into its own plug-in and head only, and each plug-in's dropout draws from its own
generator state. The result is the same as separate ``kadapt infuse`` runs with the same seeds
(weights equal within floating-point tolerance; ``tests/test_multi_infusion.py``).

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
import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from kadapt.store.hidden_cache import states_from_batch
from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.core.errors import KadaptError
from kadapt.runs.infuse import InfusionResult, _save
from kadapt.runs.run_log import MetricsLog, plot_run
from kadapt.core.objective import build_objective
from kadapt.core.family import build_plugin
from kadapt.runs.recipe import Recipe
from kadapt.runs.context import (
    encode_records,
    load_backbone,
    objective_config_with_labels,
    prepare_run_dir,
    read_splits,
)
from kadapt.runs.loop import (
    TrainResult,
    _param_groups,
    evaluate_model,
    linear_schedule,
    make_sampler,
)

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


@dataclass
class Member:
    """One recipe of a joint run: its model, encoded data and optimisation state."""

    recipe: Recipe
    model: KnowledgeModel
    train_set: list[dict]
    dev_set: list[dict]
    run_dir: Path = Path()
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    metrics: MetricsLog | None = None
    rng: dict = field(default_factory=dict)
    running: list[float] = field(default_factory=list)
    dev_history: list[dict] = field(default_factory=list)


def prepare_member(recipe: Recipe, backbone, splits, policy) -> Member:
    """Build plug-in + head exactly as :func:`kadapt.runs.infuse.infuse` does (same seeding) and encode."""
    torch.manual_seed(recipe.training.seed)
    plugin = build_plugin(recipe.plugin.kind, {"name": recipe.name, **recipe.plugin.config}, backbone.spec,
                          source=f"{recipe.source}: plugin.config")
    model = KnowledgeModel(backbone, [plugin])
    config = objective_config_with_labels(recipe.objective.name, recipe.objective.config, splits.train)
    model.head = build_objective(recipe.objective.name, model.feature_size, config,
                                 source=f"{recipe.source}: objective")
    tok, max_len = backbone.tokenizer, recipe.data.max_length
    train_set, _ = encode_records(model.head, splits.train, tok, max_len, policy, f"{recipe.name} train")
    dev_set, _ = encode_records(model.head, splits.dev, tok, max_len, policy, f"{recipe.name} dev")
    return Member(recipe, model, train_set, dev_set)


def prepare_members(recipes: Sequence[Recipe], backbone=None, device="cpu") -> tuple[object, list[Member]]:
    """Backbone, data read once, and one :class:`Member` per recipe (recipes must share the stream)."""
    from kadapt.data.policy import ErrorPolicy

    check_shared_stream(recipes)
    lead = recipes[0]
    backbone = (backbone or load_backbone(lead.backbone)).to(device)
    policy = ErrorPolicy(lead.data.on_error)
    splits = read_splits(lead.data, lead.training.seed, policy)
    members = [prepare_member(r, backbone, splits, policy) for r in recipes]
    for split in ("train", "dev"):
        _check_same_ids(members, split)
    return backbone, members


def _check_same_ids(members: Sequence[Member], split: str) -> None:
    first = members[0]
    for other in members[1:]:
        mine, theirs = getattr(first, f"{split}_set"), getattr(other, f"{split}_set")
        same = len(mine) == len(theirs) and all(a["input_ids"] == b["input_ids"] for a, b in zip(mine, theirs))
        if not same:
            raise KadaptError(
                f"{first.recipe.source} and {other.recipe.source}: objectives {first.model.head.name!r} and "
                f"{other.model.head.name!r} encode the {split} records into different token ids "
                f"({len(mine)} vs {len(theirs)} examples); one backbone pass cannot serve both")


class JointCollate:
    """Batch of joint examples → one padded batch per member (+ cached states shared by all)."""

    def __init__(self, pad_id: int, cached=None):
        self.pad_id, self.cached = pad_id, cached

    def __call__(self, items: Sequence[dict]) -> list[dict]:
        states = {}
        if self.cached is not None:
            states = self.cached([{"input_ids": i["members"][0]["input_ids"], "cache_row": i["row"]} for i in items])
            states = {k: v for k, v in states.items() if k.startswith("hidden_state.")}
        count = len(items[0]["members"])
        return [{**collate([i["members"][m] for i in items], self.pad_id), **states} for m in range(count)]


@contextmanager
def _own_rng(member: Member, device: torch.device):
    """Run with ``member``'s generator state (dropout), then store it back: no RNG shared between plug-ins."""
    outer = torch.get_rng_state()
    torch.set_rng_state(member.rng["cpu"])
    if device.type == "cuda":
        outer_cuda = torch.cuda.get_rng_state(device)
        torch.cuda.set_rng_state(member.rng["cuda"], device)
    try:
        yield
    finally:
        member.rng["cpu"] = torch.get_rng_state()
        torch.set_rng_state(outer)
        if device.type == "cuda":
            member.rng["cuda"] = torch.cuda.get_rng_state(device)
            torch.cuda.set_rng_state(outer_cuda, device)


def infuse_many(recipes: Sequence[Recipe], *, out: str | Path | None = None, backbone=None,
                resume: bool = False) -> list[InfusionResult]:
    """Infuse every recipe's plug-in in one run (see module doc); ``out`` = parent of the run folders."""
    from kadapt.runs.loop import make_accelerator

    recipes = list(recipes)
    if not recipes:
        raise KadaptError("infuse_many needs at least one recipe")
    if resume:
        raise KadaptError("--resume is not supported for a joint run of several recipes; resume them one by one")
    check_shared_stream(recipes)  # before the zoo check and any work
    for recipe in recipes:
        if recipe.output.zoo:
            from kadapt.store.zoo import Zoo

            Zoo(recipe.output.zoo).require_new(recipe.name)
    accelerator = make_accelerator(recipes[0].training)
    if accelerator.num_processes > 1:
        raise KadaptError("a joint run of several recipes runs in one process; launch it without accelerate")
    backbone, members = prepare_members(recipes, backbone, accelerator.device)
    if not members[0].train_set:
        raise ValueError("no training examples (after reading and encoding the data)")
    for member in members:
        member.run_dir = prepare_run_dir(member.recipe, Path(out) / member.recipe.name if out else None)
    results = _train_jointly(members, backbone, accelerator)
    outputs = []
    for member, result in zip(members, results):
        plugin_dir = _save(member.model, member.run_dir / "plugin", member.recipe, result, backbone)
        zoo_entry = None
        if member.recipe.output.zoo:
            from kadapt.store.zoo import Zoo

            zoo_entry = Zoo(member.recipe.output.zoo).add(plugin_dir, member.recipe.name)
        outputs.append(InfusionResult(plugin_dir, member.run_dir, result, zoo_entry))
    return outputs


def _joint_sets(members: Sequence[Member], split: str) -> list[dict]:
    sets = [getattr(m, f"{split}_set") for m in members]
    return [{"row": i, "members": [s[i] for s in sets]} for i in range(len(sets[0]))]


def _train_jointly(members: Sequence[Member], backbone, accelerator) -> list[TrainResult]:
    lead = members[0].recipe
    config, device = lead.training, accelerator.device
    pad_id = backbone.tokenizer.pad_token_id
    layers = sorted({k for m in members for k in m.model.required_layers()})
    cached = dev_collates = None
    if config.cache:
        from kadapt.store.hidden_cache import CachedCollate
        from kadapt.runs.infuse import cache_splits

        union = KnowledgeModel(backbone, [p for m in members for p in m.model.plugins])
        _, dev_rows, collates = cache_splits(union, lead, members[0].train_set, members[0].dev_set)
        cached = collates["collate_fn"]
        if "dev_collate_fn" in collates:
            dev_cache = collates["dev_collate_fn"].cache
            dev_collates = [CachedCollate(dev_cache, layers, pad_id) for _ in members]
            for member in members:
                member.dev_set = [{**e, "cache_row": r["cache_row"]} for e, r in zip(member.dev_set, dev_rows)]
    examples = _joint_sets(members, "train")
    sampler = make_sampler(config, [m["members"][0] for m in examples])
    loader = DataLoader(examples, batch_size=config.batch_size, sampler=sampler,
                        collate_fn=JointCollate(pad_id, cached), num_workers=config.num_workers,
                        generator=torch.Generator().manual_seed(config.seed))
    steps_per_epoch = max(1, math.ceil(len(loader) / config.grad_accum))
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    for member in members:
        cfg = member.recipe.training
        member.model.to(device)
        member.optimizer = torch.optim.AdamW(_param_groups(member.model, cfg.weight_decay), lr=cfg.lr)
        member.scheduler = linear_schedule(member.optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
        member.metrics = MetricsLog(member.run_dir / "metrics.jsonl", enabled=True, append=False)
        torch.manual_seed(cfg.seed)  # what accelerate's set_seed does to the generators in a separate run
        member.rng = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            torch.cuda.manual_seed_all(cfg.seed)
            member.rng["cuda"] = torch.cuda.get_rng_state(device)
        member.model.train()
    global_step, started, done = 0, time.perf_counter(), False

    def run_dev(epoch: int) -> None:
        for index, member in enumerate(members):
            if not member.dev_set:
                continue
            collate_fn = dev_collates[index] if dev_collates else None
            with _own_rng(member, device):  # a DataLoader without generator draws its base seed from it
                result, _ = evaluate_model(member.model, member.dev_set, config.batch_size, pad_id, device,
                                           accelerator.autocast, collate_fn=collate_fn)
            record = {"step": global_step, "epoch": epoch, "split": "dev", **result}
            member.dev_history.append(record)
            member.metrics.write(record)

    for epoch in range(config.epochs if not config.max_steps else 10**9):
        if done:
            break
        sampler.set_epoch(epoch)
        for batch_index, batches in enumerate(loader, start=1):
            batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
            ids, mask = batches[0]["input_ids"], batches[0]["attention_mask"]
            states = states_from_batch(batches[0])
            with accelerator.autocast():
                if states is None:
                    states = backbone.encode(ids, mask, layers)  # the one pass that feeds every plug-in
                else:
                    states = {k: v.to(backbone.dtype) for k, v in states.items()}
            for member, batch in zip(members, batches):
                with _own_rng(member, device), accelerator.autocast():
                    loss = member.model.head(member.model.features(ids, mask, states), batch).loss
                (loss / config.grad_accum).backward()
                member.running.append(loss.detach().item())
            if batch_index % config.grad_accum and batch_index != len(loader):
                continue
            global_step += 1
            for member in members:
                cfg = member.recipe.training
                if cfg.max_grad_norm:
                    params = [p for p in member.model.parameters() if p.requires_grad]
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                member.optimizer.step()
                member.scheduler.step()
                member.optimizer.zero_grad(set_to_none=True)
                step_loss = sum(member.running) / len(member.running)
                member.running = []
                if global_step % cfg.log_every == 0 or global_step == 1:
                    member.metrics.write({"step": global_step, "epoch": epoch, "split": "train", "loss": step_loss,
                                          "lr": member.scheduler.get_last_lr()[0]})
            if config.eval_every and global_step % config.eval_every == 0:
                run_dev(epoch)
            if global_step >= total_steps:
                done = True
                break
        if not config.eval_every:
            run_dev(epoch)
    seconds = time.perf_counter() - started
    results = []
    for member in members:
        plot_run(member.run_dir / "metrics.jsonl", member.run_dir / "curves.png")
        final = member.dev_history[-1] if member.dev_history else {}
        results.append(TrainResult(global_step, member.dev_history, final, seconds, member.run_dir))
    return results

