"""Batched inference with a fine-tuned run folder: ``kadapt predict RUN_DIR --data FILE --out preds.jsonl``,
and on raw texts in the head's markup: ``model.predict(texts)`` / ``kadapt predict RUN_DIR --text "..."``
(labels with scores; no gold label needed).

Gold labels are optional: records without one (T-REx-rc/TACRED without ``relation``) or with a label the
head does not know are still predicted; each output line carries ``gold`` (``null`` when absent/unknown).

One backbone pass per batch feeds every plug-in (``KnowledgeModel``); examples are batched by length
(dynamic padding, little of it) and written back in file order with a throughput figure.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.data.encoding import collate
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.fileio import atomic_write_text, json_line, read_json
from kadapt.core.errors import KadaptError
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
def predict_examples(model, encoded: list[dict], batch_size: int = 64, *, with_scores: bool = False) -> list:
    """Predictions of ``model.head`` for encoded examples, in input order (batched by length); with
    ``with_scores`` each is ``{"label", "score"}`` (:meth:`~kadapt.core.objective.Objective.scores`)."""
    model.eval()
    pad_id, device = model.backbone.tokenizer.pad_token_id, model.backbone.device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    predictions: list = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in rows], pad_id).items()}
        logits = model(batch).logits.float()
        labels = model.head.predict(logits, batch)
        scores = model.head.scores(logits, batch) if with_scores else labels
        for row, label, score in zip(rows, labels, scores):
            predictions[row] = {"label": label, "score": score} if with_scores else label
    return predictions


#: max_length of raw-text inputs for a model built in code (a fine-tuned run records its own)
DEFAULT_MAX_LENGTH = 128


def encode_texts(model, texts, labels=None, *, max_length: int | None = None) -> list[dict]:
    """Feature dicts of raw texts in the head's markup (:meth:`Objective.text_record`), with gold
    ``labels`` when given (training data) and without any label otherwise (prediction)."""
    if model.head is None:
        raise KadaptError("the model has no head: raw texts need one (KnowledgeModel.from_pretrained(..., head=...))")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if labels is not None and len(labels) != len(texts):
        raise KadaptError(f"{len(texts)} texts but {len(labels)} labels")
    records = [model.head.text_record(text, None if labels is None else labels[i], source=f"text {i}")
               for i, text in enumerate(texts)]
    max_length = max_length or model.run_info.get("max_length") or DEFAULT_MAX_LENGTH
    with gold_optional() if labels is None else contextlib.nullcontext():
        records = model.head.prepare_records(records, "predict", model.run_info.get("seed", 0))
        return [model.head.encode(record, model.backbone.tokenizer, max_length) for record in records]


def predict_texts(model, texts, *, batch_size: int = 32, max_length: int | None = None) -> list[dict]:
    """``[{"text", "label", "score"}, ...]`` for raw texts in the head's markup, in input order."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    encoded = encode_texts(model, texts, max_length=max_length)
    predictions = predict_examples(model, encoded, batch_size, with_scores=True)
    return [{"text": text, **prediction} for text, prediction in zip(texts, predictions)]


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
