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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from kadapt.runs.checkpoint import (latest_checkpoint, load_checkpoint, prune_checkpoints, resumable_state,
                               save_checkpoint)
from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.runs.run_log import MetricsLog, plot_run

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings of one run (recipe section ``training``)."""

    epochs: int = field(default=1, metadata={"help": "Passes over the training data."})
    batch_size: int = field(default=32, metadata={"help": "Global batch per forward (split across processes)."})
    grad_accum: int = field(default=1, metadata={"help": "Batches per optimizer step (effective batch = batch_size × grad_accum)."})
    lr: float = field(default=2e-5, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not applied to biases and LayerNorm)."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of optimizer steps with linear warm-up."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    mixed_precision: str = field(default="auto", metadata={"help": "'no', 'bf16', 'fp16' or 'auto' (bf16 on a GPU that has it, else no)."})
    seed: int = field(default=42, metadata={"help": "Seed of data order, dropout and init."})
    max_steps: int = field(default=0, metadata={"help": "Stop after this many optimizer steps (0 = run all epochs)."})
    log_every: int = field(default=10, metadata={"help": "Log the training loss every N optimizer steps."})
    eval_every: int = field(default=0, metadata={"help": "Evaluate on dev every N optimizer steps (0 = at epoch ends)."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N optimizer steps (0 = at epoch ends only)."})
    keep_checkpoints: int = field(default=2, metadata={"help": "Checkpoints kept on disk (oldest deleted)."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    cpu: bool = field(default=False, metadata={"help": "Force CPU even when a GPU is present."})
    length_bucketing: bool = field(default=False, metadata={"help": "Batch examples of similar length together (seeded), so dynamic padding pads little."})
    cache: bool = field(default=False, metadata={"help": "Infusion: compute the backbone's hidden states once, store them memory-mapped and train/evaluate from them (outside plug-ins)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hidden-state cache folder (default: $KADAPT_CACHE_DIR or ~/.cache/kadapt/hidden_states)."})
    cache_dtype: str = field(default="float16", metadata={"help": "Storage dtype of cached states: float16, bfloat16 or float32 (computation stays in the backbone's dtype)."})


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


def linear_schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_sampler(config: TrainConfig, examples: list[dict]) -> Sampler[int]:
    """The seeded per-epoch order of training examples (length-bucketed when asked)."""
    if config.length_bucketing:
        from kadapt.data.bucketing import LengthBucketSampler

        return LengthBucketSampler([len(e["input_ids"]) for e in examples], config.batch_size, config.seed)
    return EpochSampler(len(examples), config.seed)


@torch.no_grad()
def evaluate_model(model: KnowledgeModel, examples: list[dict], batch_size: int, pad_id: int,
                   device, autocast=None, with_predictions: bool = False,
                   collate_fn: Callable | None = None) -> tuple[dict, list]:
    """Metrics (and optionally predictions) of ``model.head`` over encoded ``examples``."""
    was_training = model.training
    model.eval()
    counts: dict[str, float] = {}
    predictions: list = []
    loader = DataLoader(examples, batch_size=batch_size, shuffle=False,
                        collate_fn=collate_fn or (lambda b: collate(b, pad_id)))
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        if autocast is not None:
            with autocast():
                out = model(batch)
        else:
            out = model(batch)
        for key, value in model.head.count(out.logits.float(), batch).items():
            counts[key] = counts.get(key, 0.0) + value
        if with_predictions:
            predictions.extend(model.head.predict(out.logits.float(), batch))
    model.train(was_training)
    return (type(model.head).summarize(counts) if counts else {}), predictions


def train(
    model: KnowledgeModel,
    train_examples: list[dict],
    dev_examples: list[dict] | None,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    pad_id: int,
    resume: bool = False,
    accelerator=None,
    on_step: Callable[[int, float], None] | None = None,
    collate_fn: Callable | None = None,
    dev_collate_fn: Callable | None = None,
) -> TrainResult:
    """Train every parameter of ``model`` that requires grad; returns dev metrics history.

    ``collate_fn`` / ``dev_collate_fn`` replace the padding collate (e.g. to attach cached states).
    """
    from accelerate.utils import set_seed

    run_dir = Path(run_dir)
    accelerator = accelerator or make_accelerator(config)
    set_seed(config.seed)
    if not train_examples:
        raise ValueError("no training examples (after reading and encoding the data)")
    model.backbone.to(accelerator.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("nothing to train: every parameter of the model is frozen")

    sampler = make_sampler(config, train_examples)
    # The loader gets its own generator: creating an iterator (each epoch, and again on resume)
    # must not draw from the global RNG that dropout uses, or a resumed run drifts.
    loader = DataLoader(train_examples, batch_size=config.batch_size, sampler=sampler,
                        collate_fn=collate_fn or (lambda b: collate(b, pad_id)),
                        num_workers=config.num_workers, drop_last=False,
                        generator=torch.Generator().manual_seed(config.seed))
    steps_per_epoch = max(1, math.ceil(len(loader) / config.grad_accum))
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    scheduler = linear_schedule(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    wrapped, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    ckpt_dir = run_dir / "checkpoints"
    start_epoch, skip_batches, global_step = 0, 0, 0
    if resume:
        found = latest_checkpoint(ckpt_dir)
        if found is not None:
            state = load_checkpoint(found, module=accelerator.unwrap_model(wrapped), optimizer=optimizer,
                                    scheduler=scheduler, rank=accelerator.process_index)
            start_epoch, skip_batches, global_step = state["epoch"], state["batches_in_epoch"], state["global_step"]
            log.info("resumed from %s (epoch %d, step %d)", found, start_epoch, global_step)
        else:
            log.info("--resume: no complete checkpoint in %s, starting fresh", ckpt_dir)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process, append=resume)
    if resume:
        metrics.drop_after(global_step)
    unwrapped = accelerator.unwrap_model(wrapped)
    dev_history: list[dict] = []

    def run_dev(epoch: int) -> None:
        if dev_examples and accelerator.is_main_process:
            result, _ = evaluate_model(unwrapped, dev_examples, config.batch_size, pad_id,
                                       accelerator.device, accelerator.autocast, collate_fn=dev_collate_fn)
            record = {"step": global_step, "epoch": epoch, "split": "dev", **result}
            dev_history.append(record)
            metrics.write(record)
        accelerator.wait_for_everyone()

    def checkpoint(epoch: int, batches: int) -> None:
        accelerator.wait_for_everyone()
        save_checkpoint(
            ckpt_dir / f"step-{global_step:07d}",
            trainable=resumable_state(unwrapped),
            optimizer=optimizer, scheduler=scheduler,
            trainer_state={"epoch": epoch, "batches_in_epoch": batches, "global_step": global_step},
            rank=accelerator.process_index, is_main=accelerator.is_main_process,
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            prune_checkpoints(ckpt_dir, config.keep_checkpoints)

    from tqdm.auto import tqdm

    progress = tqdm(total=total_steps, initial=global_step, disable=not accelerator.is_main_process,
                    desc=run_dir.name, dynamic_ncols=True)
    started = time.perf_counter()
    wrapped.train()
    done = global_step >= total_steps
    for epoch in range(start_epoch, config.epochs if not config.max_steps else 10**9):
        if done:
            break
        sampler.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(loader, skip_batches) if skip_batches else loader
        if hasattr(epoch_loader, "set_epoch"):
            # accelerate's loaders re-set the sampler's epoch to their own iteration counter when
            # iterated; that counter starts at 0 in a resumed process, so set it to the true epoch.
            epoch_loader.set_epoch(epoch)
        batches = skip_batches
        skip_batches = 0
        running = []
        for batch in epoch_loader:
            if batches % config.grad_accum == 0 and hasattr(unwrapped, "before_step"):
                unwrapped.before_step(batch, global_step, epoch, optimizer)  # plug-in hooks (TRELM routing)
            with accelerator.accumulate(wrapped):
                loss = wrapped(batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            batches += 1
            running.append(accelerator.reduce(loss.detach(), "mean").item())
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            step_loss = sum(running) / len(running)
            running = []
            if on_step is not None:
                on_step(global_step, step_loss)
            if global_step % config.log_every == 0 or global_step == 1:
                metrics.write({"step": global_step, "epoch": epoch, "split": "train", "loss": step_loss,
                               "lr": scheduler.get_last_lr()[0]})
                progress.set_postfix(loss=f"{step_loss:.4f}")
            if config.eval_every and global_step % config.eval_every == 0:
                run_dev(epoch)
            if config.save_every and global_step % config.save_every == 0:
                checkpoint(epoch, batches)
            if global_step >= total_steps:
                done = True
                break
        if not config.eval_every:
            run_dev(epoch)
        end_of_epoch = not done or batches >= len(loader)
        checkpoint(epoch + 1 if end_of_epoch else epoch, 0 if end_of_epoch else batches)
    progress.close()
    seconds = time.perf_counter() - started
    if accelerator.is_main_process:
        plot_run(run_dir / "metrics.jsonl", run_dir / "curves.png")
    final = dev_history[-1] if dev_history else {}
    return TrainResult(global_step, dev_history, final, seconds, run_dir)


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
