"""The first run on a GPU: bf16 autocast on RoBERTa-large shapes, cached vs live infusion of two
plug-ins per backbone pass at the paper's batch size, CUDA peak memory with and without gradient
checkpointing, tokens/s. Prints ``name: value`` lines and writes ``benchmarks/results/gpu_check.json``.

The backbone is built from the published roberta-large config with random weights (no download):
speed and memory depend on shapes, not on weights. ``--dry-run`` runs every part with tiny shapes
on the CPU (the test suite runs it), so the script works the first time a GPU is lent.

    bash benchmarks/gpu_check.sh            # on a machine with one CUDA GPU, < 10 minutes
    bash benchmarks/gpu_check.sh --dry-run --out /tmp/gpu_check.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gradient_checkpointing import CASES, autograd_pass  # noqa: E402

#: K-Adapter factual infusion (paper): batch 128, max length 64
PAPER_BATCH, PAPER_LENGTH = 128, 64
TINY = {"vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 80, "pad_token_id": 1}
TINY_ADAPTER = {"adapter_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_transformer_layers": 1}


class Check:
    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.results: dict[str, float | int | str | None] = {}

    def record(self, name: str, value) -> None:
        self.results[name] = value
        print(f"{name}: {value}", flush=True)

    def autocast(self):
        return nullcontext() if self.dry_run else torch.autocast("cuda", dtype=torch.bfloat16)

    def sync(self) -> None:
        if not self.dry_run:
            torch.cuda.synchronize()

    def peak_reset(self) -> None:
        if not self.dry_run:
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self):
        return None if self.dry_run else round(torch.cuda.max_memory_allocated() / 2**30, 3)


def backbone(check: Check):
    from transformers import RobertaConfig, RobertaModel

    from kadapt.core.backbone import FrozenBackbone
    from kadapt.testing.tiny import roberta_large_config

    torch.manual_seed(0)
    config = RobertaConfig(**TINY) if check.dry_run else roberta_large_config()
    return FrozenBackbone(RobertaModel(config, add_pooling_layer=False).to(check.device), None, name="roberta-large-shapes")


def matmul_rate(check: Check) -> None:
    n = 256 if check.dry_run else 8192
    dtype = torch.float32 if check.dry_run else torch.bfloat16
    a, b = torch.randn(n, n, device=check.device, dtype=dtype), torch.randn(n, n, device=check.device, dtype=dtype)
    a @ b
    check.sync()
    started, reps = time.perf_counter(), 5 if check.dry_run else 50
    for _ in range(reps):
        a @ b
    check.sync()
    check.record(f"matmul_tflops_{'fp32' if check.dry_run else 'bf16'}",
                 round(2 * n ** 3 * reps / (time.perf_counter() - started) / 1e12, 3))


def two_plugins(check: Check, base):
    """Two K-Adapter plug-ins (factual, linguistic sizes) over one backbone pass, each with a linear
    probe and its own AdamW (lr 1e-5 as the paper's linguistic setting)."""
    from kadapt.core.family import build_plugin
    from kadapt.core.model import KnowledgeModel

    torch.manual_seed(1)
    extra = TINY_ADAPTER if check.dry_run else {}
    plugins = [build_plugin("kadapter", {"name": name, **extra}, base.spec) for name in ("factual", "linguistic")]
    model = KnowledgeModel(base, plugins).to(check.device)
    heads = nn.ModuleList(nn.Linear(p.output_size, 8) for p in plugins).to(check.device)
    optimizers = [torch.optim.AdamW([*p.parameters(), *h.parameters()], lr=1e-5) for p, h in zip(plugins, heads)]
    return model, heads, optimizers


def infusion_step(check: Check, model, heads, optimizers, ids, mask, labels, states=None) -> float:
    with check.autocast():
        pass_ = model.backbone_pass(ids, mask, states)
        losses = [nn.functional.cross_entropy(head(plugin(pass_)[:, 0].float()), labels)
                  for plugin, head in zip(model.plugins, heads)]
    sum(losses).backward()
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(sum(losses).detach())


def infusion(check: Check, base, steps: int) -> None:
    """Live backbone pass vs hidden-state cache, same batches, same seeded plug-ins."""
    from kadapt.core.model import states_from_batch
    from kadapt.store.hidden_cache import CacheKey, CachedCollate, open_or_build, with_rows

    batch, length = (8, 16) if check.dry_run else (PAPER_BATCH, PAPER_LENGTH)
    gen = torch.Generator().manual_seed(2)
    examples = [{"input_ids": torch.randint(5, base.spec.vocab_size, (length,), generator=gen).tolist()}
                for _ in range(batch * steps)]
    labels = torch.randint(0, 8, (batch,), generator=gen).to(check.device)
    losses, seconds = {}, {}
    with tempfile.TemporaryDirectory() as cache_dir:
        dtype = "float32" if check.dry_run else "bfloat16"
        key = CacheKey.for_data(base, examples, [], length, dtype)
        started = time.perf_counter()
        with check.autocast():
            cache = open_or_build(base, examples, _layers(check, base), key, cache_dir, batch_size=batch,
                                  pad_id=1)
        check.sync()
        check.record("cache_build_tokens_per_s", round(len(examples) * length / (time.perf_counter() - started)))
        collate = CachedCollate(cache, cache.layers, pad_id=1)
        rows = with_rows(examples)
        for path in ("reference", "cached"):
            model, heads, optimizers = two_plugins(check, base)
            self_losses, started = [], None
            for step in range(steps):
                cached = collate(rows[step * batch:(step + 1) * batch])
                ids, mask = cached["input_ids"].to(check.device), cached["attention_mask"].to(check.device)
                states = ({k: v.to(check.device) for k, v in states_from_batch(cached).items()}
                          if path == "cached" else None)
                self_losses.append(infusion_step(check, model, heads, optimizers, ids, mask, labels, states))
                if step == 0:  # the first step warms up kernels: not timed
                    check.sync()
                    started = time.perf_counter()
            check.sync()
            seconds[path] = (time.perf_counter() - started) / max(1, steps - 1)
            losses[path] = self_losses
            check.record(f"infusion_{path}_step_s", round(seconds[path], 4))
            check.record(f"infusion_{path}_tokens_per_s", round(batch * length / seconds[path]))
    check.record("infusion_cached_speedup", round(seconds["reference"] / seconds["cached"], 2))
    check.record("infusion_cached_vs_reference_first_loss_abs_diff", abs(losses["cached"][0] - losses["reference"][0]))


def _layers(check: Check, base) -> list[int]:
    from kadapt.core.family import build_plugin

    extra = TINY_ADAPTER if check.dry_run else {}
    plugin = build_plugin("kadapter", {"name": "layers", **extra}, base.spec)
    return sorted({*plugin.required_layers(), base.spec.num_layers})


def checkpointing(check: Check, steps: int) -> None:
    """CUDA peak memory and time of the three autograd passes with gradient checkpointing off / on."""
    from kadapt.core.tuned_backbone import TunedBackbone

    for case in CASES:
        batch = (2 if check.dry_run else 8) if case == "trelm_attribution" else (4 if check.dry_run else 32)
        length = 16 if check.dry_run else 128
        for on in (False, True):
            base = backbone(check)
            model = TunedBackbone(base, "full", copy_weights=False) if case == "backbone_full" else base
            if case == "backbone_full":
                model.model.train()
            model.set_gradient_checkpointing(on)
            ids = torch.randint(5, base.spec.vocab_size, (batch, length), device=check.device)
            mask = torch.ones_like(ids)
            with check.autocast():
                autograd_pass(case, model, ids, mask)  # warm-up
            check.sync()
            check.peak_reset()
            started = time.perf_counter()
            for _ in range(steps):
                with check.autocast():
                    autograd_pass(case, model, ids, mask)
            check.sync()
            per_pass = (time.perf_counter() - started) / steps
            tag = f"gc_{case}_{'on' if on else 'off'}"
            check.record(f"{tag}_peak_gib", check.peak_gib())
            check.record(f"{tag}_tokens_per_s", round(batch * length * (20 if case == "trelm_attribution" else 1) / per_pass))
            del model, base
            if not check.dry_run:
                torch.cuda.empty_cache()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="Tiny shapes on the CPU (the test suite runs this).")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "gpu_check.json"))
    parser.add_argument("--steps", type=int, default=None, help="Timed steps per measurement (default 2 dry, 10 GPU).")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device visible; run with --dry-run to check the script on the CPU",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1) if args.dry_run else None
    check = Check(args.dry_run)
    steps = args.steps or (2 if args.dry_run else 10)
    check.record("device", "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name())
    started = time.perf_counter()
    matmul_rate(check)
    base = backbone(check)
    infusion(check, base, steps + 1)
    del base
    checkpointing(check, steps)
    check.record("total_seconds", round(time.perf_counter() - started, 1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"written_by": "benchmarks/gpu_check.py", "dry_run": args.dry_run,
                               "torch": torch.__version__, "machine": platform.node(), "steps": steps,
                               "results": check.results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
