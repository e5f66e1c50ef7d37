"""Performance measurements of issue 7 (used by ``benchmarks/run.py``): cache, joint plug-ins, limits.

Backbone: RoBERTa-proportioned and scaled to CPU — 24 layers like roberta-large, hidden width 256
(heads 4, FFN 4×), random weights; K-Adapter at roberta-large proportions: adapter width 3/4 of the
hidden size, FFN 4× the adapter width, 2 transformer layers per adapter layer, reading hidden states
(0, 11, 23). Every mode runs the same operations the library runs (``KnowledgeModel``, the cache's
memory-mapped reader and collate, the joint loop's one pass per batch); modes are interleaved and
repeated, and each figure is the median, so a busy machine slows all modes alike.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.store import hidden_cache as cache
from kadapt.core.backbone import FrozenBackbone
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective
from kadapt.core.family import build_plugin


@dataclass
class Shape:
    layers: int = 24
    hidden: int = 256
    heads: int = 4
    batch: int = 8
    seq: int = 64
    labels: int = 40

    @property
    def plugin_config(self) -> dict:
        size = self.hidden * 3 // 4
        return {"adapter_size": size, "num_attention_heads": self.heads, "intermediate_size": 4 * size,
                "layers": [0, self.layers // 2 - 1, self.layers - 1], "dropout": 0.1}


def build_backbone(shape: Shape) -> FrozenBackbone:
    from transformers import AutoModel

    from kadapt.testing.tiny import roberta_large_config

    config = roberta_large_config()
    config.num_hidden_layers, config.hidden_size, config.num_attention_heads = shape.layers, shape.hidden, shape.heads
    config.intermediate_size, config.vocab_size = 4 * shape.hidden, 8000
    torch.manual_seed(0)
    return FrozenBackbone(AutoModel.from_config(config, add_pooling_layer=False))


def factual(backbone: FrozenBackbone, shape: Shape, seed: int = 1) -> KnowledgeModel:
    torch.manual_seed(seed)
    plugin = build_plugin("kadapter", {"name": "factual", **shape.plugin_config}, backbone.spec)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("relation_classification", model.feature_size,
                                 {"labels": [f"P{i}" for i in range(shape.labels)]})
    return model


def linguistic(backbone: FrozenBackbone, shape: Shape, seed: int = 2) -> KnowledgeModel:
    torch.manual_seed(seed)
    plugin = build_plugin("kadapter", {"name": "linguistic", **shape.plugin_config}, backbone.spec)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("dependency_head", model.feature_size, {"max_length": shape.seq})
    return model


def examples(shape: Shape, count: int, seed: int = 0) -> list[dict]:
    """Encoded examples carrying both annotations (relation: f_*, dependency: l_labels)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(5, 8000, (shape.seq,), generator=gen).tolist()
        heads = torch.randint(0, shape.seq, (shape.seq,), generator=gen).tolist()
        out.append({"input_ids": ids, "subj_pos": 3, "obj_pos": 9, "subj_end": 6, "obj_end": 12,
                    "labels": int(torch.randint(0, shape.labels, (1,), generator=gen)), "l_labels": heads})
    return out


def split_batch(batch: dict) -> tuple[dict, dict]:
    """The factual and the linguistic view of one collated batch."""
    shared = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    fact = {**shared, **{k: batch[k] for k in ("subj_pos", "obj_pos", "subj_end", "obj_end", "labels")}}
    ling = {**shared, "labels": batch["l_labels"]}
    for key, value in batch.items():
        if key.startswith(cache.STATE_PREFIX):
            fact[key] = ling[key] = value
    return fact, ling


def optimizer(model: KnowledgeModel) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def train_step(model, opt, batch: dict, states=None) -> None:
    feats = model.features(batch["input_ids"], batch["attention_mask"], states)
    loss = model.head(feats, batch).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


# ------------------------------------------------------------------------------ measurement helpers
def reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux ``clear_refs``), so each mode's peak is its own."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mb(field: str) -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def interleaved(modes: dict[str, Callable[[], None]], repeats: int, steps: int) -> dict[str, dict]:
    """Median CPU seconds (``process_time``: robust to other jobs on a shared machine; one torch thread)
    and wall seconds per call of each mode (modes alternate within every repeat), the process's peak
    RSS while the mode ran and that peak minus the RSS when the mode started (its own working memory)."""
    times: dict[str, list[float]] = {name: [] for name in modes}
    walls: dict[str, list[float]] = {name: [] for name in modes}
    peaks: dict[str, float] = {name: 0.0 for name in modes}
    extra: dict[str, float] = {name: 0.0 for name in modes}
    for fn in modes.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in modes.items():
            reset_peak_rss()
            before = _status_mb("VmRSS")
            start, wall = time.process_time(), time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.process_time() - start) / steps)
            walls[name].append((time.perf_counter() - wall) / steps)
            peaks[name] = max(peaks[name], peak_rss_mb())
            extra[name] = max(extra[name], peak_rss_mb() - before)
    return {name: {"step_s": statistics.median(t), "wall_step_s": statistics.median(walls[name]),
                   "peak_rss_mb": peaks[name], "extra_rss_mb": extra[name]} for name, t in times.items()}


def alone(mode: Callable[[], None], steps: int) -> dict:
    """Peak RSS of one mode in this process (set-up done, peak reset, then warm-up + ``steps`` steps)."""
    reset_peak_rss()
    for _ in range(steps + 1):
        mode()
    return {"peak_rss_mb": peak_rss_mb()}


def peak_rss_in_fresh_process(bench: str, mode: str, shape: Shape, steps: int = 2) -> float:
    """Run one mode of one benchmark in a new Python process; its peak RSS (MB)."""
    import json
    import subprocess
    import sys

    code = (f"import sys, json; sys.path[:0] = {sys.path[:2]!r}; import torch; torch.set_num_threads(1); "
            f"import perf; shape = perf.Shape(**{vars(shape)!r}); "
            f"print(json.dumps(perf.BENCHMARKS[{bench!r}](shape, 1, {steps}, only={mode!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def matmul_flops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):  # CPU seconds, like the steps (one thread)
        start = time.process_time()
        for _ in range(reps):
            a @ b
        best = min(best, time.process_time() - start)
    return 2 * n**3 * reps / best


# ------------------------------------------------------------------------------ benchmarks
def infusion_cache(shape: Shape, repeats: int, steps: int, only: str | None = None) -> dict:
    """Reference style (HF forward, all hidden states) vs kadapt uncached vs kadapt cached step."""
    from kadapt.data.encoding import collate

    backbone = build_backbone(shape)
    model = factual(backbone, shape)
    opt = optimizer(model)
    data = [{k: v for k, v in e.items() if k != "l_labels"} for e in examples(shape, 4 * shape.batch)]
    layers = model.required_layers()
    with tempfile.TemporaryDirectory() as tmp:
        key = cache.CacheKey("bench", None, "bench", shape.seq, cache.ids_sha256(data), "float16")
        started = time.perf_counter()
        entry = cache.open_or_build(backbone, data, layers, key, tmp, batch_size=shape.batch)
        build_s = time.perf_counter() - started
        cached_collate = cache.CachedCollate(entry, layers, pad_id=1)
        rows = cache.with_rows(data)
        cursor = {"i": 0}

        def next_rows():
            i = cursor["i"] = (cursor["i"] + shape.batch) % len(data)
            return i, i + shape.batch

        L = backbone.spec.num_layers

        def reference():
            a, b = next_rows()
            batch = collate(data[a:b], 1)
            with torch.no_grad():
                out = backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     output_hidden_states=True)
            states = dict(enumerate(out.hidden_states))
            feats = torch.cat([states[L], model.plugins[0].adapt(states, batch["attention_mask"])], -1)
            loss = model.head(feats, batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def uncached():
            a, b = next_rows()
            train_step(model, opt, collate(data[a:b], 1))

        def cached():
            a, b = next_rows()
            batch = cached_collate(rows[a:b])
            train_step(model, opt, batch, cache.states_from_batch(batch))

        modes = {"reference": reference, "uncached": uncached, "cached": cached}
        if only:
            return alone(modes[only], steps)
        result = interleaved(modes, repeats, steps)
    tokens = shape.batch * shape.seq
    plugin_params = model.plugins[0].num_parameters()
    backbone_params = sum(p.numel() for p in backbone.model.parameters())
    flops = matmul_flops()
    cached_flops = 6 * plugin_params * tokens / result["cached"]["step_s"]
    return {**{f"{k}_step_s": v["step_s"] for k, v in result.items()},
            **{f"{k}_wall_step_s": v["wall_step_s"] for k, v in result.items()},
            **{f"{k}_peak_rss_mb": v["peak_rss_mb"] for k, v in result.items()},
            **{f"{k}_extra_rss_mb": v["extra_rss_mb"] for k, v in result.items()},
            "cache_build_s": build_s, "cache_build_examples": len(data),
            "backbone_params": backbone_params, "plugin_params": plugin_params, "tokens_per_step": tokens,
            "matmul_gflops_fp32": flops / 1e9, "cached_step_gflops": cached_flops / 1e9,
            "cached_step_flops_fraction": cached_flops / flops}


def two_plugins(shape: Shape, repeats: int, steps: int, only: str | None = None) -> dict:
    """Factual + linguistic infusion: one backbone pass per batch for both vs a pass per plug-in."""
    from kadapt.data.encoding import collate

    backbone = build_backbone(shape)
    fact, ling = factual(backbone, shape), linguistic(backbone, shape)
    opts = [optimizer(fact), optimizer(ling)]
    layers = sorted(set(fact.required_layers()) | set(ling.required_layers()))
    data = examples(shape, 4 * shape.batch)
    cursor = {"i": 0}

    def batch_views():
        i = cursor["i"] = (cursor["i"] + shape.batch) % len(data)
        return split_batch(collate(data[i:i + shape.batch], 1))

    def separate():
        f, g = batch_views()
        train_step(fact, opts[0], f)
        train_step(ling, opts[1], g)

    def joint():
        f, g = batch_views()
        states = backbone.encode(f["input_ids"], f["attention_mask"], layers)
        train_step(fact, opts[0], f, states)
        train_step(ling, opts[1], g, states)

    modes = {"separate": separate, "joint": joint}
    if only:
        return alone(modes[only], steps)
    result = interleaved(modes, repeats, steps)
    return {**{f"{k}_step_s": v["step_s"] for k, v in result.items()},
            **{f"{k}_wall_step_s": v["wall_step_s"] for k, v in result.items()},
            **{f"{k}_peak_rss_mb": v["peak_rss_mb"] for k, v in result.items()},
            **{f"{k}_extra_rss_mb": v["extra_rss_mb"] for k, v in result.items()},
            "two_plugins_one_pass_vs_separate": result["separate"]["step_s"] / result["joint"]["step_s"]}


def finetune_step(shape: Shape, repeats: int, steps: int, only: str | None = None) -> dict:
    """Fine-tuning over [backbone; F; L] (frozen plug-ins, head trains): shared pass vs a pass per plug-in."""
    from kadapt.data.encoding import collate

    backbone = build_backbone(shape)
    plugins = [factual(backbone, shape).plugins[0], linguistic(backbone, shape).plugins[0]]
    for plugin in plugins:
        plugin.requires_grad_(False)
    model = KnowledgeModel(backbone, plugins)
    model.head = build_objective("relation_classification", model.feature_size,
                                 {"labels": [f"P{i}" for i in range(shape.labels)]})
    model.train()
    opt = optimizer(model)
    data = [{k: v for k, v in e.items() if k != "l_labels"} for e in examples(shape, 4 * shape.batch)]
    cursor = {"i": 0}
    L = backbone.spec.num_layers

    def next_batch():
        i = cursor["i"] = (cursor["i"] + shape.batch) % len(data)
        return collate(data[i:i + shape.batch], 1)

    def shared():
        train_step(model, opt, next_batch())

    def per_plugin():
        batch = next_batch()
        ids, mask = batch["input_ids"], batch["attention_mask"]
        parts = []
        for plugin in plugins:  # what composing plug-ins without a shared pass costs
            states = backbone.encode(ids, mask, sorted(set(plugin.required_layers()) | {L}))
            parts.append(plugin.adapt(states, mask))
        feats = torch.cat([states[L], *parts], -1)
        loss = model.head(feats, batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    modes = {"per_plugin": per_plugin, "shared": shared}
    if only:
        return alone(modes[only], steps)
    result = interleaved(modes, repeats, steps)
    return {**{f"{k}_step_s": v["step_s"] for k, v in result.items()},
            **{f"{k}_wall_step_s": v["wall_step_s"] for k, v in result.items()},
            **{f"{k}_peak_rss_mb": v["peak_rss_mb"] for k, v in result.items()},
            **{f"{k}_extra_rss_mb": v["extra_rss_mb"] for k, v in result.items()},
            "finetune_shared_pass_vs_separate": result["per_plugin"]["step_s"] / result["shared"]["step_s"]}


def bucketing_padding(batch: int = 32, seed: int = 0) -> dict:
    """Padding share with a random order vs length-bucketed batches (lengths of a real-ish spread)."""
    from kadapt.data.bucketing import LengthBucketSampler, padding_fraction
    from kadapt.runs.loop import EpochSampler

    torch.manual_seed(seed)
    lengths = torch.distributions.LogNormal(3.2, 0.5).sample((5000,)).clamp(5, 128).long().tolist()
    order = list(EpochSampler(len(lengths), seed))
    random_batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    bucketed = LengthBucketSampler(lengths, batch, seed).batches()
    return {"padding_fraction_random": padding_fraction(lengths, random_batches),
            "padding_fraction_bucketed": padding_fraction(lengths, bucketed)}


BENCHMARKS = {"infusion": infusion_cache, "two_plugins": two_plugins, "finetune": finetune_step}
