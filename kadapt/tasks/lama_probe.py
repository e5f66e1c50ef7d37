"""LAMA-style probing (K-Adapter App. E.4): train ONLY a linear MLM layer over the frozen model's
features (``[backbone_last ; plug-ins]``), then P@1 on cloze queries.

Training records are plain sentences (any record with ``words``, e.g. CoNLL-U; K-Adapter used
WikiText-2): ``mask_probability`` of the non-special tokens (at least one) are replaced by the
tokenizer's mask token, chosen by a seeded RNG per record, and the layer learns to restore them.
Test records are :class:`~kadapt.data.records.ClozeExample` queries: the single ``[MASK]`` must be
predicted as the object. The object must be ONE token of the vocabulary (checked by tokenising the
query with the object in place); other queries raise a :class:`DataError`, which ``on_error: skip``
counts (reason ``multi-token object``) and the run reports. Predictions rank the whole vocabulary
(LAMA restricts to a common vocabulary of its five models; that list is not used here).

The MLM layer's output size is the tokenizer's vocabulary; it is created at the first ``encode``
call when ``vocab_size`` is not given (``config_dict`` then records it for reloading).
``decoder_init: random`` (default, K-Adapter's "add and train a linear layer") or ``embeddings``: the
weights over the backbone part of the features start as the backbone's input word embeddings (the tied
read-out of BERT-style MLM heads), the plug-in part at zero — so a small training corpus starts from a
sensible read-out; ``fine-tuning`` calls :meth:`bind_backbone` for it.
"""
from __future__ import annotations

import random
import re
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.records import ClozeExample
from kadapt.core.errors import DataError
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)
from kadapt.tasks.inputs import mask_token

IGNORE = -100
LAMA_MASK = "[MASK]"


def _multi_token(err: DataError) -> DataError:
    err.reason = "multi-token object"  # the skip category ErrorPolicy counts under
    return err


@register_objective
class LamaProbe(Objective):
    name = "lama_probe"
    main_metric = "precision_at_1"

    def __init__(self, feature_size: int, vocab_size: int | None = None, mask_probability: float = 0.15,
                 seed: int = 0, top_k: int = 5, decoder_init: str = "random"):
        super().__init__(feature_size)
        if decoder_init not in ("random", "embeddings"):
            raise ValueError(f"decoder_init must be 'random' or 'embeddings', got {decoder_init!r}")
        self.mask_probability, self.seed, self.top_k, self.decoder_init = mask_probability, seed, top_k, decoder_init
        self.vocab_size = vocab_size
        self.decoder = nn.Linear(feature_size, vocab_size) if vocab_size else None
        self._tokens: list[str] | None = None

    def bind(self, model) -> None:
        self.bind_backbone(model.backbone)

    def bind_backbone(self, backbone) -> None:
        """Create the MLM layer for ``backbone``'s vocabulary; with ``decoder_init: embeddings``
        start it from the backbone's word embeddings (features are ``[backbone_last ; plug-ins]``)."""
        self._ensure_decoder(backbone.tokenizer)
        if self.decoder_init != "embeddings":
            return
        words = backbone.model.get_input_embeddings().weight.detach()
        hidden = backbone.spec.hidden_size
        if words.shape[0] < self.vocab_size:
            raise ValueError(f"backbone has {words.shape[0]} word embeddings for a {self.vocab_size}-token tokenizer")
        with torch.no_grad():
            self.decoder.weight.zero_()
            self.decoder.weight[:, :hidden] = words[: self.vocab_size].to(self.decoder.weight.dtype)
            self.decoder.bias.zero_()

    # ------------------------------------------------------------------ encoding
    def _ensure_decoder(self, tokenizer) -> None:
        if self.decoder is None:
            self.vocab_size = len(tokenizer)
            self.decoder = nn.Linear(self.feature_size, self.vocab_size)
        elif self.vocab_size != len(tokenizer):
            raise ValueError(f"lama_probe head has {self.vocab_size} outputs, tokenizer has {len(tokenizer)} tokens")
        if self._tokens is None:
            self._tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))

    def encode(self, record, tokenizer, max_length: int) -> dict:
        self._ensure_decoder(tokenizer)
        if isinstance(record, ClozeExample):
            return self._encode_cloze(record, tokenizer, max_length)
        words = getattr(record, "words", None)
        if not words:
            raise DataError(getattr(record, "source", "") or "<example>", None,
                            f"lama_probe trains on sentences (records with words), got {type(record).__name__}")
        enc = tokenizer(" ".join(words), truncation=True, max_length=max_length, return_special_tokens_mask=True)
        ids = list(enc["input_ids"])
        candidates = [t for t, special in enumerate(enc["special_tokens_mask"]) if not special]
        if not candidates:
            raise DataError(record.source or "<example>", None, "sentence has no tokens to mask")
        rng = random.Random(zlib.crc32(f"{self.seed}|{record.source}|{' '.join(words)}".encode()))
        chosen = [t for t in candidates if rng.random() < self.mask_probability] or [rng.choice(candidates)]
        _, mask_id = mask_token(tokenizer, record.source)
        labels = [IGNORE] * len(ids)
        for t in chosen:
            labels[t], ids[t] = ids[t], mask_id
        return {"input_ids": ids, "labels": labels, "relation_id": -1}

    def _encode_cloze(self, record: ClozeExample, tokenizer, max_length: int) -> dict:
        where = record.source or "<example>"
        if record.text.count(LAMA_MASK) != 1:
            raise DataError(where, None, f"query needs exactly one {LAMA_MASK}: {record.text!r}")
        filled = record.text.replace(LAMA_MASK, record.answer)
        start = record.text.index(LAMA_MASK)
        end = start + len(record.answer)
        enc = tokenizer(filled, truncation=True, max_length=max_length, return_offsets_mapping=True,
                        return_special_tokens_mask=True)
        covering = [t for t, ((s, e), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"]))
                    if not special and s < end and e > start]
        if len(covering) != 1:
            raise _multi_token(DataError(where, None, f"multi-token object: {record.answer!r} is {len(covering)} "
                                         "tokens; LAMA probes need a single-token object"))
        (t,) = covering
        s, e = enc["offset_mapping"][t]
        if (s, e) != (start, end) and filled[s:e].strip() != record.answer:
            raise _multi_token(DataError(where, None, f"multi-token object: {record.answer!r} shares its token "
                                         "with neighbours"))
        ids = list(enc["input_ids"])
        labels = [IGNORE] * len(ids)
        labels[t] = ids[t]
        ids[t] = mask_token(tokenizer, where)[1]
        rel = re.fullmatch(r"P(\d+)", record.relation)
        return {"input_ids": ids, "labels": labels, "relation_id": int(rel.group(1)) if rel else 0}

    # ------------------------------------------------------------------ model
    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        if self.decoder is None:
            raise ValueError("lama_probe head has no MLM layer yet: encode a record first or pass vocab_size")
        masked = batch["labels"] != IGNORE
        logits = self.decoder(features[masked])  # (masked tokens, vocab), example-major order
        loss = F.cross_entropy(logits.float(), batch["labels"][masked]) if masked.any() else None
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        masked = batch["labels"] != IGNORE
        hits = (logits.argmax(-1) == batch["labels"][masked]).float()
        relation = batch["relation_id"][:, None].expand_as(masked)[masked]
        counts = {"n": float(hits.numel()), "hits": float(hits.sum())}
        for rel in relation.unique().tolist():
            if rel > 0:
                chosen = relation == rel
                counts[f"n_P{rel}"] = float(chosen.sum())
                counts[f"hits_P{rel}"] = float(hits[chosen].sum())
        return counts

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        out = {"precision_at_1": safe_div(counts["hits"], counts["n"]), "queries": counts["n"]}
        relations = [k[2:] for k in counts if k.startswith("n_P")]
        if relations:
            out["precision_at_1_macro"] = sum(safe_div(counts[f"hits_{r}"], counts[f"n_{r}"])
                                              for r in relations) / len(relations)
        return out

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        per_example = (batch["labels"] != IGNORE).sum(1).tolist()
        top = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).indices.tolist()
        names = self._tokens or [str(i) for i in range(self.vocab_size or 0)]
        out, row = [], 0
        for n in per_example:
            out.append([[names[i] for i in top[r]] for r in range(row, row + n)])
            row += n
        return [p[0] if len(p) == 1 else p for p in out]

    def config_dict(self) -> dict:
        return {"vocab_size": self.vocab_size, "mask_probability": self.mask_probability, "seed": self.seed,
                "top_k": self.top_k, "decoder_init": self.decoder_init}
