"""Cost of the full-forward fallback beside the layered fast path, and of the layered self-check.

One architecture (RoBERTa, random weights built from a config: 12 layers, hidden 256, 4 heads, FFN 1024;
batch 8 x 64 with padding; CPU, 1 thread). K-Adapter's default reads hidden states 0, L/2 and L; a
K-Adapter-like read of the lower half stops at layer L/2 on the layered path, while the fallback (what a
model_type outside the registry gets) always runs every layer with ``output_hidden_states``.

    python benchmarks/fallback_cost.py [--out benchmarks/results/fallback_cost.json] [--repeats 11]

Writes the medians (seconds) and ratios to the JSON; prints them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from artifact import write_results

from kadapt.core.backbone import FrozenBackbone

OUT = Path(__file__).resolve().parent / "results" / "fallback_cost.json"


def _interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, run in turn within every repeat (a busy machine's drift hits all)."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _encoder(backbone, ids, mask, layers, fallback: bool):
    def run():
        backbone._layered_refusal = "measured: forced full forward" if fallback else None
        backbone.encode(ids, mask, layers)
    return run


def measure(repeats: int = 7) -> dict:
    from transformers import RobertaConfig, RobertaModel

    torch.set_num_threads(1)
    config = RobertaConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                           intermediate_size=1024, max_position_embeddings=80, pad_token_id=1)
    torch.manual_seed(0)
    backbone = FrozenBackbone(RobertaModel(config, add_pooling_layer=False), name="roberta-12x256")
    ids = torch.randint(3, 1000, (8, 64), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[4:, 40:] = 0
    ids = ids.masked_fill(mask == 0, 1)
    L = backbone.spec.num_layers
    half, everything = [0, L // 2], [0, L // 2, L]
    seconds = _interleaved_medians({
        "layered_states_0_6": _encoder(backbone, ids, mask, half, False),
        "fallback_states_0_6": _encoder(backbone, ids, mask, half, True),
        "layered_states_0_6_12": _encoder(backbone, ids, mask, everything, False),
        "fallback_states_0_6_12": _encoder(backbone, ids, mask, everything, True),
        "self_check_once": lambda: backbone.verify_layers(tolerance=1e-4),
    }, repeats)
    backbone._layered_refusal = None
    return {
        "model": "roberta 12 layers x 256 hidden (random weights)", "batch": [8, 64], "threads": 1,
        "repeats": repeats,
        "seconds": seconds,
        "fallback_over_layered_lower_half": round(seconds["fallback_states_0_6"] / seconds["layered_states_0_6"], 2),
        "fallback_over_layered_all_layers": round(seconds["fallback_states_0_6_12"] / seconds["layered_states_0_6_12"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    results = measure(args.repeats)
    settings = {k: results.pop(k) for k in ("model", "batch", "threads", "repeats")}
    print(json.dumps(results, indent=2))
    write_results(args.out, results, "benchmarks/fallback_cost.py", settings)


if __name__ == "__main__":
    main()
