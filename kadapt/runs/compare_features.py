"""Feature blocks for ``kadapt compare``: a frozen model's features computed once, kept at the positions
the head reads, and heads trained on them with the one training loop.

With the backbone and every plug-in frozen and concatenation fusion (``finetune`` defaults), the features
``[backbone_last ; plug-in_1 ; ...]`` are a pure function of the input, so a comparison of many variants
needs each block once per example: ``last`` (the backbone's last state), one block per plug-in (infused or
R-twin) and ``layers-a-b-c`` (the lower hidden states the plug-ins read, concatenated: the no-adapter
control). Only the rows a head reads (:meth:`~kadapt.core.objective.Objective.kept_positions`) are kept;
a variant is the concatenation of its blocks. Backbone states come from the hidden-state cache when the
inputs are single sequences (``training.cache_dir`` / ``$KADAPT_CACHE_DIR``), so blocks added later (more
infusion seeds) do not re-run the backbone.
"""
from __future__ import annotations

from pathlib import Path

import torch

from kadapt.core.fileio import load_tensors, save_tensors
from kadapt.core.model import KnowledgeModel, TrainableModel, grouped_batch, states_from_batch
from kadapt.data.encoding import collate

BATCH = 64


def gather_positions(features: torch.Tensor, batch: dict, keys: tuple[str, ...]) -> torch.Tensor:
    """Feature rows at the ``keys`` positions: (B, P, F), or (B, G, P, F) for grouped inputs."""
    if features.dim() == 3:
        rows = torch.arange(features.shape[0])
        return torch.stack([features[rows, batch[k]] for k in keys], dim=1)
    return torch.stack([features.gather(2, batch[k][..., None, None].expand(-1, -1, 1, features.shape[-1])).squeeze(2)
                        for k in keys], dim=2)


def split_tensors(examples: list[dict], keys: tuple[str, ...], pad_id: int) -> dict[str, torch.Tensor]:
    """Every key a head reads besides the token inputs, collated over the whole split; the position keys
    rewritten to index the kept rows (0, 1, ...)."""
    batch = collate(examples, pad_id)
    out = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
    for i, key in enumerate(keys):
        out[key] = torch.full_like(batch[key], i)
    return out


def block_path(folder: Path, block: str) -> Path:
    return folder / f"{block}.safetensors"


def compute_blocks(backbone, plugins: dict[str, object], layer_blocks: dict[str, tuple[int, ...]],
                   examples: list[dict], keys: tuple[str, ...], folder: Path, cache) -> None:
    """Write ``folder/<block>.safetensors`` (tensor ``features``) for ``last``, each plug-in and each
    lower-layer block that is not there yet, from one pass over ``examples`` per batch.

    ``cache``: ``(tagged examples, collate)`` from :func:`kadapt.store.hidden_cache.cached_split`, or None
    (a live backbone pass per batch)."""
    wanted = {name for name in ["last", *plugins, *layer_blocks] if not block_path(folder, name).exists()}
    if not wanted:
        return
    names = [n for n in plugins if n in wanted]
    model = KnowledgeModel(backbone, [plugins[n] for n in names])
    model.eval()
    rows = cache[0] if cache else examples
    kept: dict[str, list[torch.Tensor]] = {name: [] for name in wanted}
    with torch.no_grad():
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            batch = cache[1](chunk) if cache else collate(chunk, backbone.tokenizer.pad_token_id)
            for name, value in _batch_blocks(model, names, layer_blocks, wanted, batch).items():
                kept[name].append(gather_positions(value, batch, keys).to(torch.float32))
    folder.mkdir(parents=True, exist_ok=True)
    for name, parts in kept.items():
        save_tensors(block_path(folder, name), {"features": torch.cat(parts).contiguous()})


def _batch_blocks(model: KnowledgeModel, names: list[str], layer_blocks: dict, wanted: set, batch: dict) -> dict:
    """Full-sequence blocks of one batch (grouped inputs flattened for the pass, then regrouped)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    grouped = ids.dim() == 3
    if grouped:
        pass_ = model.backbone_pass(ids.flatten(0, 1), mask.flatten(0, 1), None, grouped_batch(batch))
    else:
        pass_ = model.backbone_pass(ids, mask, states_from_batch(batch), batch)
    blocks = {"last": pass_.last} if "last" in wanted else {}
    for name, plugin in zip(names, model.plugins):
        blocks[name] = plugin(pass_)
    for name, layers in layer_blocks.items():
        if name in wanted:
            blocks[name] = torch.cat([pass_.states[k] for k in layers], dim=-1)
    return {k: (v.unflatten(0, ids.shape[:2]) if grouped else v) for k, v in blocks.items()}


def load_block(folder: Path, name: str) -> torch.Tensor:
    return load_tensors(block_path(folder, name))[0]["features"]


class FeatureModel(TrainableModel):
    """A head over precomputed kept features (batch key ``features``): what the training loop trains for
    a frozen variant. ``backbone`` is carried (not a submodule) because the loop moves it to the device."""

    def __init__(self, backbone, head):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        self.head = head

    def required_layers(self) -> list[int]:
        return []

    def batch_features(self, batch: dict) -> torch.Tensor:
        return batch["features"]

    def forward(self, batch: dict):
        return self.head.step(self, batch)


class RowCollate:
    """Rows of a split (example indices) -> a batch of its tensors (features = the variant's blocks)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __call__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(rows, dtype=torch.long)
        return {k: v[index] for k, v in self.tensors.items()}


def per_example_counts(head, tensors: dict[str, torch.Tensor], batch_size: int = 256) -> tuple[list[str], torch.Tensor]:
    """``(keys, counts)``: the head's summable counts of every example (rows), for the paired bootstrap."""
    rows: list[dict] = []
    head.eval()
    with torch.no_grad():
        n = next(iter(tensors.values())).shape[0]
        for start in range(0, n, batch_size):
            batch = {k: v[start:start + batch_size] for k, v in tensors.items()}
            logits = head(batch["features"], batch).logits.float()
            for i in range(logits.shape[0]):
                rows.append(head.count(logits[i:i + 1], {k: v[i:i + 1] for k, v in batch.items()}))
    keys = sorted({k for r in rows for k in r})
    return keys, torch.tensor([[float(r.get(k, 0.0)) for k in keys] for r in rows], dtype=torch.float64)
