"""Batched inference with a fine-tuned run folder: ``kadapt predict RUN_DIR --data FILE --out preds.jsonl``.

Gold labels are optional: records without one (T-REx-rc/TACRED without ``relation``) or with a label the
head does not know are still predicted; each output line carries ``gold`` (``null`` when absent/unknown).

One backbone pass per batch feeds every plug-in (``KnowledgeModel``); examples are batched by length
(dynamic padding, little of it) and written back in file order with a throughput figure.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.fileio import atomic_write_text, json_line, read_json
from kadapt.data.records import gold_optional
from kadapt.runs.recipe import resolve_path
from kadapt.runs.context import encode_records


@dataclass
class PredictResult:
    out: Path
    examples: int
    seconds: float
    skipped: dict

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


def stand_in_labels(records: list, labels: list | None) -> tuple[list, dict[int, object]]:
    """Records whose gold label is missing or unknown to the head get a stand-in label (the head's first),
    so they encode; predictions come from the logits only. Returns the records and each one's gold
    (``None`` when absent or unknown), keyed by ``id(record)``."""
    out, gold = [], {}
    for record in records:
        label = record.label if "label" in {f.name for f in dataclasses.fields(record)} else None
        if labels and isinstance(label, str) and label not in labels:
            record = dataclasses.replace(record, label=labels[0])
            gold[id(record)] = label or None
        else:
            gold[id(record)] = label
        out.append(record)
    return out, gold


@torch.no_grad()
def predict_examples(model, encoded: list[dict], batch_size: int = 64) -> list:
    """Predictions of ``model.head`` for encoded examples, in input order (batched by length)."""
    model.eval()
    pad_id, device = model.backbone.tokenizer.pad_token_id, model.backbone.device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    predictions: list = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in rows], pad_id).items()}
        logits = model(batch).logits.float()
        for row, prediction in zip(rows, model.head.predict(logits, batch)):
            predictions[row] = prediction
    return predictions


def predict_file(run_dir: str | Path, data: str | Path, out: str | Path, fmt: str | None = None, *,
                 batch_size: int = 64, on_error: str = "raise", model=None) -> PredictResult:
    """Predict every record of ``data`` with the fine-tuned ``run_dir``; one JSON line per record."""
    from kadapt.runs.finetune import load_finetuned, require_usable

    run_dir = Path(run_dir)
    info = read_json(run_dir / "head_config.json", "fine-tuned head config")
    model = model or load_finetuned(run_dir)
    policy = ErrorPolicy(on_error)
    with gold_optional():  # gold labels are optional: predict runs on new, unlabelled data
        records = read_records(fmt or info["data_format"], resolve_path(str(data)), policy)
    records, gold = stand_in_labels(records, model.head.config_dict().get("labels"))
    encoded, kept = encode_records(model.head, records, model.backbone.tokenizer, info["max_length"], policy,
                                   str(data))
    require_usable(encoded, data, policy)
    started = time.perf_counter()
    predictions = predict_examples(model, encoded, batch_size)
    seconds = time.perf_counter() - started
    lines = [json_line({"source": r.source, "prediction": p, "gold": gold[id(r)]}) for r, p in zip(kept, predictions)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + ("\n" if lines else ""))
    return PredictResult(out, len(encoded), seconds, policy.summary())
