"""The training loop shared by infusion and fine-tuning, on ``accelerate``.

AdamW with linear warm-up/decay, gradient accumulation, autocast (bf16/fp16) where available,
checkpoints every ``save_every`` optimizer steps and at each epoch end (``--resume`` continues
bit-exactly: weights, optimizer, scheduler, RNG and data position), tqdm progress, a JSONL metrics
log and a PNG plot in the run folder. Under ``accelerate launch`` the trainable modules (plug-ins +
head) are DDP-wrapped; the frozen backbone is not (it is not part of the module tree).
Batches are split across processes (``split_batches``): N processes see the same global batches
as one process, so loss curves agree.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from kadapt.runs.checkpoint import (latest_checkpoint, load_checkpoint, prune_checkpoints, resumable_state,
                               save_checkpoint)
from kadapt.core import distributed as dist
from kadapt.core.errors import DataError, KadaptError
from kadapt.core.model import KnowledgeModel, TrainableModel
from kadapt.core.plugin import StepInfo
from kadapt.data.encoding import collate
from kadapt.runs.recipe import TrainConfig
from kadapt.runs.run_log import MetricsLog, plot_run
from kadapt.runs.sharded_checkpoint import SHARDING_FILE, load_fsdp_checkpoint, save_fsdp_checkpoint
from kadapt.runs.trackers import check_report_to, start_trackers

log = logging.getLogger(__name__)


class EpochSampler(Sampler[int]):
    """Seeded permutation per epoch: the data order is a pure function of (seed, epoch)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.size))
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=gen).tolist())

    def __len__(self) -> int:
        return self.size


@dataclass
class TrainResult:
    global_step: int
    dev_history: list[dict]
    final_dev: dict
    seconds: float
    run_dir: Path


def resolve_mixed_precision(setting: str, cpu: bool) -> str:
    if setting != "auto":
        return setting
    if not cpu and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    from kadapt.runs.sharding import check_sharding

    check_sharding(config.sharding)
    return Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision, config.cpu),
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        cpu=config.cpu,
    )


def _param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(optimizer, warmup: int, total: int, decay: bool = True):
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total`` (or constant)."""
    if warmup < 0 or total < 1:
        raise ValueError(f"learning-rate schedule needs warmup >= 0 and total >= 1 steps, got {warmup}, {total}")

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if not decay:
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def evaluate_dev(model: KnowledgeModel, dev_set: list[dict] | dict[str, list[dict]], batch_size: int, pad_id: int,
                 device, autocast=None, collate_fn: Callable | None = None, distributed: bool = False) -> dict:
    """Dev metrics; for named dev sets (one per language, say) every numeric metric is the unweighted
    mean over the sets and ``per_dev`` holds each set's own metrics. ``distributed``: see
    :func:`evaluate_model`."""
    def one(examples):
        return evaluate_model(model, examples, batch_size, pad_id, device, autocast, collate_fn=collate_fn,
                              distributed=distributed)[0]

    if not isinstance(dev_set, dict):
        return one(dev_set)
    per_dev = {name: one(examples) for name, examples in dev_set.items()}
    return {**average_metrics(list(per_dev.values())), "per_dev": per_dev}


def average_metrics(results: list[dict]) -> dict:
    """Unweighted mean of each numeric metric that every result has."""
    keys = [k for k in results[0] if all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                                         for r in results)]
    return {k: sum(r[k] for r in results) / len(results) for k in keys}


def make_sampler(config: TrainConfig, examples: list[dict]) -> Sampler[int]:
    """The seeded per-epoch order of training examples (length-bucketed when asked)."""
    if config.length_bucketing:
        from kadapt.data.bucketing import LengthBucketSampler

        return LengthBucketSampler([len(e["input_ids"]) for e in examples], config.batch_size, config.seed)
    return EpochSampler(len(examples), config.seed)


class EvalBatches(Sampler[list[int]]):
    """Batches ``rank, rank + world, ...`` of the unshuffled split (all of them for one process), padded
    with repeats of an owned batch to the same count on every rank (sharded models need every rank
    in every forward); ``real[i]`` says whether the i-th yielded batch counts."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world: int = 1):
        total = math.ceil(size / batch_size)
        self.batches = [list(range(b * batch_size, min(size, (b + 1) * batch_size))) for b in range(total)]
        self.owned = list(range(rank, total, world))
        per_rank = math.ceil(total / world)
        self.real = [True] * len(self.owned) + [False] * (per_rank - len(self.owned) if total else 0)
        filler = self.owned[-1] if self.owned else 0
        self.owned += [filler] * (len(self.real) - len(self.owned))

    def __iter__(self):
        return iter([self.batches[b] for b in self.owned])

    def __len__(self) -> int:
        return len(self.owned)


@torch.no_grad()
def evaluate_model(model: KnowledgeModel, examples: list[dict], batch_size: int, pad_id: int,
                   device, autocast=None, with_predictions: bool = False,
                   collate_fn: Callable | None = None, distributed: bool = False) -> tuple[dict, list]:
    """Metrics (and optionally predictions) of ``model.head`` over encoded ``examples``.

    ``distributed`` (every process calls it): each rank evaluates its share of the batches, which are
    exactly the batches of one process; the per-batch counts (and predictions) of all ranks are summed
    (joined) in batch order on every rank, so every rank returns the single-process result bit for bit.
    """
    was_training = model.training
    model.eval()
    rank, world = (dist.rank(), dist.world_size()) if distributed else (0, 1)
    sampler = EvalBatches(len(examples), batch_size, rank, world)
    loader = DataLoader(examples, batch_sampler=sampler, collate_fn=collate_fn or (lambda b: collate(b, pad_id)))
    per_batch: list[list] = []
    for index, real, batch in zip(sampler.owned, sampler.real, loader):
        batch = {k: v.to(device) for k, v in batch.items()}
        if autocast is not None:
            with autocast():
                out = model(batch)
        else:
            out = model(batch)
        if real:
            logits = out.logits.float()
            per_batch.append([index, model.head.count(logits, batch),
                              model.head.predict(logits, batch) if with_predictions else []])
    model.train(was_training)
    if world > 1:
        per_batch = sorted((entry for ranked in dist.all_gather_json(per_batch) for entry in ranked),
                           key=lambda entry: entry[0])
    counts: dict[str, float] = {}
    predictions: list = []
    for _, batch_counts, batch_predictions in per_batch:
        for key, value in batch_counts.items():
            counts[key] = counts.get(key, 0.0) + value
        predictions.extend(batch_predictions)
    return (type(model.head).summarize(counts) if counts else {}), predictions


@dataclass
class Member:
    """One model the loop trains, with its own optimizer, scheduler, run folder, metrics log and (in a
    joint run) RNG stream. A plain run has one member; a joint run several that share each batch."""

    model: TrainableModel
    train_set: list[dict]
    dev_set: list[dict] | dict[str, list[dict]] | None  # a dict: named dev sets, metrics averaged
    config: TrainConfig
    run_dir: Path
    collate_fn: Callable | None = None
    dev_collate_fn: Callable | None = None
    wrapped: torch.nn.Module | None = None
    unwrapped: TrainableModel | None = None
    optimizer: object = None
    scheduler: object = None
    trainable: list = field(default_factory=list)
    metrics: MetricsLog | None = None
    rng: dict | None = None
    sharded: bool = False  # FSDP units over the processes (training.sharding: fsdp, several processes)
    running: list[float] = field(default_factory=list)
    dev_history: list[dict] = field(default_factory=list)


class MemberBatches:
    """Collate for the loop's loader: rows ``i`` → one padded batch per member (a list)."""

    def __init__(self, members: list[Member], pad_id: int):
        self.collates = [m.collate_fn or (lambda b: collate(b, pad_id)) for m in members]
        self.sets = [m.train_set for m in members]

    def __call__(self, rows: list[int]) -> list[dict]:
        return [fn([examples[i] for i in rows]) for fn, examples in zip(self.collates, self.sets)]


@contextmanager
def member_rng(member: Member, device: torch.device):
    """Run with ``member``'s own torch RNG stream (joint runs: dropout draws must not mix between
    plug-ins), then store it back. A member without a stream of its own uses the process RNG."""
    if member.rng is None:
        yield
        return
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


def train(model: TrainableModel, train_examples: list[dict], dev_examples: list[dict] | None,
          config: TrainConfig, run_dir: str | Path, *, pad_id: int, resume: bool = False, accelerator=None,
          on_step: Callable[[int, float], None] | None = None, collate_fn: Callable | None = None,
          dev_collate_fn: Callable | None = None) -> TrainResult:
    """Train every parameter of ``model`` that requires grad; returns dev metrics history.

    ``collate_fn`` / ``dev_collate_fn`` replace the padding collate (e.g. to attach cached states).
    """
    member = Member(model, train_examples, dev_examples, config, Path(run_dir), collate_fn, dev_collate_fn)
    return train_members([member], pad_id=pad_id, resume=resume, accelerator=accelerator, on_step=on_step)[0]


def train_members(members: list[Member], *, pad_id: int, resume: bool = False, accelerator=None,
                  on_step: Callable[[int, float], None] | None = None,
                  rows_collate: Callable[[list[int]], list[dict]] | None = None) -> list[TrainResult]:
    """THE training loop. ``members`` share the data order, the batches and (through the backbone's
    shared-pass scope) one backbone pass per batch; each has its own optimizer, scheduler, metrics and,
    when there are several, its own RNG stream, so each trains exactly as it would alone. The first
    member's ``config`` sets what the members share (seed, batch size, epochs, steps, evaluation).
    ``rows_collate`` (rows → one batch per member) replaces the per-member collates (a joint run that
    reads cached states once for all members)."""
    from accelerate.utils import set_seed

    lead = members[0].config
    for member in members:  # a tracker that is not installed: one line, before anything runs
        check_report_to(member.config.report_to)
    accelerator = accelerator or make_accelerator(lead)
    set_seed(lead.seed)
    if not members[0].train_set:
        raise DataError(members[0].run_dir, None, "no training examples (after reading and encoding the data)")
    backbone = members[0].model.backbone
    backbone.to(accelerator.device)
    backbone.set_gradient_checkpointing(lead.gradient_checkpointing)
    sampler = make_sampler(lead, members[0].train_set)
    # The loader gets its own generator: creating an iterator (each epoch, and again on resume)
    # must not draw from the global RNG that dropout uses, or a resumed run drifts.
    loader = DataLoader(list(range(len(members[0].train_set))), batch_size=lead.batch_size, sampler=sampler,
                        collate_fn=rows_collate or MemberBatches(members, pad_id), num_workers=lead.num_workers,
                        drop_last=False, generator=torch.Generator().manual_seed(lead.seed))
    steps_per_epoch = max(1, math.ceil(len(loader) / lead.grad_accum))
    total_steps = lead.max_steps or steps_per_epoch * lead.epochs
    if total_steps <= 0 and not lead.allow_degenerate:
        raise KadaptError(f"{members[0].run_dir}: zero optimizer steps (training.epochs={lead.epochs}) would write an "
                          "untrained plug-in; set training.allow_degenerate: true to allow it")
    loader = accelerator.prepare(loader)
    for member in members:
        _prepare_member(member, accelerator, total_steps, separate_rng=len(members) > 1)
    position = _resume(members[0], accelerator, resume) if resume else (0, 0, 0)
    for member in members:
        trackers = start_trackers(member.config.report_to, member.run_dir, member.config) \
            if accelerator.is_main_process and member.config.report_to else []
        member.metrics = MetricsLog(member.run_dir / "metrics.jsonl", enabled=accelerator.is_main_process,
                                    append=resume, trackers=trackers)
        if resume:
            member.metrics.drop_after(position[2])
    state = _LoopState(members, accelerator, loader, sampler, total_steps, pad_id, on_step, *position)
    with backbone.shared_passes(_union_layers(members)) if len(members) > 1 else nullcontext():
        seconds = state.run()
    for member in members:
        if member.sharded:  # every rank gets the full trained weights back (saving, evaluation, the caller)
            from kadapt.runs.sharding import unshard_model

            unshard_model(member.model)
    results = []
    for member in members:
        member.metrics.close()
        if accelerator.is_main_process:
            plot_run(member.run_dir / "metrics.jsonl", member.run_dir / "curves.png")
        final = member.dev_history[-1] if member.dev_history else {}
        results.append(TrainResult(state.global_step, member.dev_history, final, seconds, member.run_dir))
    return results


def _union_layers(members: list[Member]) -> list[int]:
    return sorted({k for m in members for k in m.model.required_layers()})


def _prepare_member(member: Member, accelerator, total_steps: int, separate_rng: bool) -> None:
    config, model = member.config, member.model
    member.sharded = config.sharding == "fsdp" and dist.active()
    if member.sharded:
        from kadapt.runs.sharding import shard_model

        shard_model(model, accelerator.device)
    member.trainable = [p for p in model.parameters() if p.requires_grad]
    if not member.trainable:
        raise ValueError("nothing to train: every parameter of the model is frozen")
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    if config.lr_schedule not in ("linear", "constant"):
        raise ValueError(f"training.lr_schedule {config.lr_schedule!r}: use 'linear' or 'constant'")
    scheduler = linear_schedule(optimizer, int(config.warmup_ratio * total_steps), total_steps,
                                decay=config.lr_schedule == "linear")
    if member.sharded:  # not DDP-wrapped: the FSDP units synchronise gradients themselves
        member.optimizer, member.scheduler = accelerator.prepare(optimizer, scheduler)
        member.wrapped = member.unwrapped = model
    else:
        member.wrapped, member.optimizer, member.scheduler = accelerator.prepare(model, optimizer, scheduler)
        member.unwrapped = accelerator.unwrap_model(member.wrapped)
    if separate_rng:  # what accelerate's set_seed does to the generators in a separate run
        torch.manual_seed(config.seed)
        member.rng = {"cpu": torch.get_rng_state()}
        if accelerator.device.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
            member.rng["cuda"] = torch.cuda.get_rng_state(accelerator.device)


def _resume(member: Member, accelerator, resume: bool) -> tuple[int, int, int]:
    """(epoch, batches consumed in it, global step) of the newest complete checkpoint, restored."""
    ckpt_dir = member.run_dir / "checkpoints"
    found = latest_checkpoint(ckpt_dir)
    seen = dist.all_gather_json(found.name if found else None)
    if len(set(seen)) > 1:  # e.g. a run folder on node-local disks: ranks would resume from different states
        raise KadaptError(f"{ckpt_dir}: --resume: ranks see different newest checkpoints "
                          f"({', '.join(f'rank {r}: {s}' for r, s in enumerate(seen))}); the run folder must be on a "
                          "filesystem every node shares")
    if found is None:
        log.warning("--resume: no complete checkpoint in %s, starting fresh", ckpt_dir)
        return 0, 0, 0
    if (found / SHARDING_FILE).exists():
        state = load_fsdp_checkpoint(found, module=member.unwrapped, optimizer=member.optimizer,
                                     scheduler=member.scheduler)
    else:
        state = load_checkpoint(found, module=member.unwrapped, optimizer=member.optimizer,
                                scheduler=member.scheduler, rank=accelerator.process_index)
    log.warning("--resume: resumed from %s (epoch %d, step %d)", found, state["epoch"], state["global_step"])
    return state["epoch"], state["batches_in_epoch"], state["global_step"]


class NonFiniteLossError(KadaptError):
    """The training loss became NaN or infinite; the run stopped before the optimizer step."""


class _LoopState:
    """The epochs → batches → optimizer steps of :func:`train_members` (kept apart so each piece of the
    loop is one short method)."""

    def __init__(self, members, accelerator, loader, sampler, total_steps, pad_id, on_step,
                 start_epoch, skip_batches, global_step):
        self.members, self.accelerator, self.loader, self.sampler = members, accelerator, loader, sampler
        self.config = members[0].config
        self.total_steps, self.pad_id, self.on_step = total_steps, pad_id, on_step
        self.start_epoch, self.skip_batches, self.global_step = start_epoch, skip_batches, global_step
        self.device = accelerator.device

    def run(self) -> float:
        from tqdm.auto import tqdm

        self.progress = tqdm(total=self.total_steps, initial=self.global_step,
                             disable=not self.accelerator.is_main_process,
                             desc=self.members[0].run_dir.name, dynamic_ncols=True)
        started = time.perf_counter()
        for member in self.members:
            member.wrapped.train()
        done = self.global_step >= self.total_steps
        for epoch in range(self.start_epoch, self.config.epochs if not self.config.max_steps else 10**9):
            if done:
                break
            done, batches = self._epoch(epoch)
            if not self.config.eval_every:
                self._dev(epoch)
            end_of_epoch = not done or batches >= len(self.loader)
            self._checkpoint(epoch + 1 if end_of_epoch else epoch, 0 if end_of_epoch else batches)
        self.progress.close()
        return time.perf_counter() - started

    def _epoch(self, epoch: int) -> tuple[bool, int]:
        """One pass over the loader; returns (step budget reached, batches consumed in the epoch)."""
        config, accelerator = self.config, self.accelerator
        self.sampler.set_epoch(epoch)
        skip, self.skip_batches = self.skip_batches, 0
        epoch_loader = accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
        # accelerate's loaders re-set the sampler's epoch to their own iteration counter when
        # iterated; that counter starts at 0 in a resumed process, so set it to the true epoch.
        epoch_loader.set_epoch(epoch)
        batches = skip
        for member_batches in epoch_loader:
            if batches % config.grad_accum == 0:
                self._hooks(member_batches, epoch)
            self._forward_backward(member_batches)
            batches += 1
            if not accelerator.sync_gradients:
                continue
            self.global_step += 1
            self.progress.update(1)
            self._log_step(epoch)
            if config.eval_every and self.global_step % config.eval_every == 0:
                self._dev(epoch)
            if config.save_every and self.global_step % config.save_every == 0:
                self._checkpoint(epoch, batches)
            if self.global_step >= self.total_steps:
                return True, batches
        return False, batches

    def _hooks(self, member_batches: list[dict], epoch: int) -> None:
        """Each model's :meth:`on_step` before the optimizer step's first forward (TRELM routing)."""
        for member, batch in zip(self.members, member_batches):
            with member_rng(member, self.device):
                member.unwrapped.on_step(StepInfo(member.unwrapped, batch, self.global_step, epoch, member.optimizer))

    def _forward_backward(self, member_batches: list[dict]) -> None:
        accelerator = self.accelerator
        with accelerator.accumulate(*[m.wrapped for m in self.members]):
            for member, batch in zip(self.members, member_batches):
                with member_rng(member, self.device):
                    with accelerator.autocast() if member.sharded else nullcontext():  # prepare() adds it under DDP
                        loss = member.wrapped(batch).loss
                    accelerator.backward(loss)
                member.running.append(accelerator.reduce(loss.detach(), "mean").item())
                self._check_finite(member, member.running[-1])
            for member in self.members:
                if accelerator.sync_gradients and member.config.max_grad_norm:
                    accelerator.clip_grad_norm_(member.trainable, member.config.max_grad_norm)
                member.optimizer.step()
                member.scheduler.step()
                member.optimizer.zero_grad(set_to_none=True)

    def _check_finite(self, member, value: float) -> None:
        """A NaN/Inf loss stops the run before the optimizer step: the weights and the last checkpoint stay good."""
        if math.isfinite(value):
            return
        last = latest_checkpoint(member.run_dir / "checkpoints")
        kept = f"the last good checkpoint {last} is kept (--resume continues from it)" if last else "no checkpoint yet"
        raise NonFiniteLossError(f"{member.run_dir}: training loss is {value} at optimizer step {self.global_step + 1}; "
                                 f"stopped before updating the weights, {kept}; lower training.lr or check the data "
                                 "and plug-in weights")

    def _log_step(self, epoch: int) -> None:
        for index, member in enumerate(self.members):
            step_loss = sum(member.running) / len(member.running)
            member.running = []
            if self.on_step is not None and index == 0:
                self.on_step(self.global_step, step_loss)
            if self.global_step % member.config.log_every == 0 or self.global_step == 1:
                member.metrics.write({"step": self.global_step, "epoch": epoch, "split": "train", "loss": step_loss,
                                      "lr": member.scheduler.get_last_lr()[0]})
                if index == 0:
                    self.progress.set_postfix(loss=f"{step_loss:.4f}")

    def _dev(self, epoch: int) -> None:
        accelerator = self.accelerator
        for member in self.members:
            if member.dev_set:  # every rank evaluates its share; every rank gets the summed result
                # a DataLoader without a generator draws its base seed from the (member's) RNG
                with member_rng(member, self.device):
                    result = evaluate_dev(member.unwrapped, member.dev_set, self.config.batch_size, self.pad_id,
                                          self.device, accelerator.autocast, collate_fn=member.dev_collate_fn,
                                          distributed=True)
                record = {"step": self.global_step, "epoch": epoch, "split": "dev", **result}
                member.dev_history.append(record)
                member.metrics.write(record)  # written by the main process only
        accelerator.wait_for_everyone()

    def _checkpoint(self, epoch: int, batches: int) -> None:
        """Resumable state of every member in its run folder (a joint run writes none: it cannot resume)."""
        if len(self.members) > 1:
            return
        member, accelerator = self.members[0], self.accelerator
        ckpt_dir = member.run_dir / "checkpoints"
        accelerator.wait_for_everyone()
        trainer_state = {"epoch": epoch, "batches_in_epoch": batches, "global_step": self.global_step}
        if member.sharded:
            save_fsdp_checkpoint(ckpt_dir / f"step-{self.global_step:07d}", module=member.unwrapped,
                                 optimizer=member.optimizer, scheduler=member.scheduler, trainer_state=trainer_state,
                                 fmt=member.config.checkpoint_format)
        else:
            save_checkpoint(
                ckpt_dir / f"step-{self.global_step:07d}",
                trainable=resumable_state(member.unwrapped),
                optimizer=member.optimizer, scheduler=member.scheduler, trainer_state=trainer_state,
                rank=accelerator.process_index, is_main=accelerator.is_main_process,
            )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            prune_checkpoints(ckpt_dir, member.config.keep_checkpoints)
