"""Helpers for the XLM-K tests (not a test module): the multilingual fixture, a tiny XLM-R, recipes."""
from __future__ import annotations

import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "multilingual"
XLMR_KW = {"num_layers": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "vocab_size": 600}
PLUGIN = {"adapter_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_transformer_layers": 1,
          "dropout": 0.0}


def fixture_texts() -> list[str]:
    texts = []
    for path in sorted(FIXTURE.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            if "text" in obj:
                texts.append(obj["text"])
    return texts


def build_backbone(out: Path) -> Path:
    from kadapt.testing.tiny_xlmr import build_tiny_xlmr

    return build_tiny_xlmr(out, fixture_texts(), **XLMR_KW)


def xlmk_recipe(backbone: Path, out: Path, *, limit: int | None = 24, queue_size: int = 16, **train) -> dict:
    base = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "log_every": 1, "seed": 3, "mixed_precision": "no",
            "cpu": True, "keep_checkpoints": 5}
    return {
        "kind": "infuse", "name": "xlmk-tiny",
        "backbone": {"name_or_path": str(backbone)},
        "plugin": {"kind": "xlmk", "config": dict(PLUGIN)},
        "objective": {"name": "xlmk_contrastive",
                      "config": {"queue_size": queue_size, "normalize": True, "temperature": 0.2}},
        "data": {"format": "xlmk_knowledge", "train": str(FIXTURE), "max_length": 32, "limit": limit},
        "training": {**base, **train},
        "output": {"dir": str(out)},
    }
