"""TRELM's infusion objective: contrastive knowledge assessing mixed with MLM (TRELM §3.1, eq. 2–3).

Input: a sentence with a subject (head entity) and an object (tail entity) span, e.g. a LAMA T-REx
evidence. Every token of the target entity is replaced by the mask token; the model must recover it.
The target is the object (tail from head + relation), or with ``inject_both_directions`` (default, the
paper's "vice versa") the subject for a fixed half of the sentences (:func:`predicts_head`). During
training with ``inject_si_targets`` the plug-in marks the SI-important rows (``batch["si_important"]``)
and CKA counts only their targets. Every token also carries its word's key and index (``word_keys`` /
``word_ids``, :func:`long_tail.word_features`) for the long-tail words of the memory bank.

* CKA (eq. 2): at each object token, ``f(h, y) = t(h)·E_y + b_y`` (``t`` = the MLM head's transform,
  ``E`` = the backbone's input word embeddings, ``b`` = the head's output bias); cross-entropy of the
  true token against ``num_negatives`` tokens drawn uniformly from the rest of the vocabulary (Q).
* MLM: ``mlm_probability`` of the other (non-entity, non-special) tokens are masked BERT-style
  (80% mask / 10% random / 10% kept; a fixed per-sentence draw) and predicted over the full vocabulary.
* ``L = θ·L_MLM + (1-θ)·L_CKA`` (eq. 3, θ = 0.5 best in the paper).

The MLM head is the backbone's own when its weight file has one (BERT ``cls.predictions.*``,
RoBERTa ``lm_head.*``); otherwise (e.g. MiniLM sentence encoders) a new one is trained. Either way the
decoder is tied to the frozen input embeddings (not copied into the head file). Call
:meth:`bind_backbone` before use. Features are ``[... ; trelm_last]``: the head reads the last
``hidden_size`` columns (default ``feature_size // 2``, i.e. ``[backbone_last ; trelm_last]``).
The dev metric ``object_top1`` is the top-1 accuracy of the object tokens over the full vocabulary.
"""
from __future__ import annotations

import logging
import random
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.records import RelationExample
from kadapt.core.errors import DataError, KadaptError
from kadapt.plugins.trelm.long_tail import word_features
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    safe_div,
)

log = logging.getLogger(__name__)
IGNORE = -100


def entity_key(surface: str) -> int:
    """Stable integer key of an entity surface (memory-bank slot before hashing into the table)."""
    return zlib.crc32(" ".join(surface.lower().split()).encode()) & 0x7FFFFFFF


def _token_range(offsets, special, span: tuple[int, int]) -> tuple[int, int] | None:
    hit = [t for t, ((s, e), sp) in enumerate(zip(offsets, special)) if not sp and s < e and s < span[1] and e > span[0]]
    return (hit[0], hit[-1] + 1) if hit else None


def _record_key(source: str | None, text: str) -> str:
    """What seeds a sentence's fixed draws: its file *name*, line and text — not the folder the data sits
    in, so moving the data (or a test's temporary folder) does not change a run."""
    return f"{Path(source).name if source else '<example>'}|{text}"


def predicts_head(record: RelationExample) -> bool:
    """The fixed per-sentence draw (half the sentences) of the "vice versa" direction: head from tail + relation."""
    return zlib.crc32(f"direction|{_record_key(record.source, record.text)}".encode()) % 2 == 1


def encode_trelm(record: RelationExample, tokenizer, max_length: int, mlm_probability: float,
                 both_directions: bool = False) -> dict:
    """Token ids with the target entity masked, MLM/CKA labels, the visible entity's token range and key.

    The target is the object (tail from head + relation) or, with ``both_directions`` for the sentences
    :func:`predicts_head` draws, the subject (head from tail + relation); ``subj_*`` then mark the object."""
    where = record.source or "<example>"
    if both_directions and predicts_head(record):
        record = RelationExample(record.text, record.obj_span, record.subj_span, record.label, record.source)
    text = record.text
    if not text.strip():
        raise DataError(where, None, "empty sentence")
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    offsets, special = enc["offset_mapping"], enc["special_tokens_mask"]
    subj = _token_range(offsets, special, record.subj_span)
    obj = _token_range(offsets, special, record.obj_span)
    for name, span, found in (("subject", record.subj_span, subj), ("object", record.obj_span, obj)):
        if found is None:
            raise DataError(where, None, f"{name} {text[span[0]:span[1]]!r} at characters {span} has no token "
                            f"in the encoded sentence (cut off at max_length={max_length} or an empty span)")
    ids = list(enc["input_ids"])
    cka = [IGNORE] * len(ids)
    mlm = [IGNORE] * len(ids)
    for t in range(*obj):
        cka[t] = ids[t]
        ids[t] = tokenizer.mask_token_id
    rng = random.Random(zlib.crc32(_record_key(record.source, text).encode()))
    entity_tokens = set(range(*obj)) | set(range(*subj))
    for t, sp in enumerate(special):
        if sp or t in entity_tokens or rng.random() >= mlm_probability:
            continue
        mlm[t] = ids[t]
        draw = rng.random()
        if draw < 0.8:
            ids[t] = tokenizer.mask_token_id
        elif draw < 0.9:
            ids[t] = rng.randrange(len(tokenizer))
    return {"input_ids": ids, "mlm_labels": mlm, "cka_labels": cka, "subj_start": subj[0], "subj_end": subj[1],
            "subj_key": entity_key(text[record.subj_span[0]:record.subj_span[1]]), "rel_key": entity_key(record.label),
            **word_features(enc, text)}


class MaskedLMHead(nn.Module):
    """BERT-style prediction head: dense → GELU → LayerNorm, decoder tied to the input embeddings + bias."""

    def __init__(self, hidden_size: int, vocab_size: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(hidden)))


_PRETRAINED_HEAD_KEYS = (  # (dense.weight, dense.bias, norm.weight, norm.bias, bias)
    ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
     "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias"),
    ("lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias", "lm_head.bias"),
)


def pretrained_mlm_head(model_dir) -> dict[str, torch.Tensor] | None:
    """The MLM head tensors in a local model folder's ``model.safetensors``, or ``None``."""
    from pathlib import Path

    from safetensors import safe_open

    path = Path(str(model_dir)) / "model.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as handle:
        names = set(handle.keys())
        for keys in _PRETRAINED_HEAD_KEYS:
            if all(k in names for k in keys):
                return dict(zip(("dense.weight", "dense.bias", "norm.weight", "norm.bias", "bias"),
                                (handle.get_tensor(k) for k in keys)))
    return None


class TRELMKnowledgeObjective(Objective):
    name = "trelm_knowledge"
    main_metric = "object_top1"

    def __init__(self, feature_size: int, vocab_size: int | None = None, hidden_size: int | None = None,
                 theta: float = 0.5, num_negatives: int = 10, mlm_probability: float = 0.15,
                 inject_both_directions: bool = True):
        super().__init__(feature_size)
        if not 0.0 <= theta <= 1.0:
            raise KadaptError(f"trelm_knowledge: theta must lie in [0, 1], got {theta}")
        if num_negatives < 1:
            raise KadaptError(f"trelm_knowledge: num_negatives must be >= 1, got {num_negatives}")
        self.hidden_size = hidden_size or feature_size // 2
        self.theta, self.num_negatives, self.mlm_probability = theta, num_negatives, mlm_probability
        self.both_directions = inject_both_directions
        self.vocab_size = vocab_size
        self.head = MaskedLMHead(self.hidden_size, vocab_size) if vocab_size else None
        self.register_buffer("embeddings", torch.zeros(0), persistent=False)
        #: True when the read-out came trained (the backbone's own MLM head); routing waits otherwise
        self.readout_trained = False

    # ------------------------------------------------------------------ set-up
    def bind(self, model) -> None:
        self.bind_backbone(model.backbone)

    def bind_backbone(self, backbone, use_pretrained_head: bool = True) -> None:
        """Tie the decoder to the backbone's input embeddings; take its MLM head when it has one."""
        weight = backbone.model.get_input_embeddings().weight
        if self.head is None:
            self.vocab_size = weight.shape[0]
            self.head = MaskedLMHead(self.hidden_size, self.vocab_size).to(weight.device)
            if use_pretrained_head:
                found = pretrained_mlm_head(backbone.name)
                if found is not None:
                    self.head.load_state_dict(found)
                    self.readout_trained = True
                    log.info("trelm_knowledge: initialised the MLM head from %s", backbone.name)
                else:
                    log.info("trelm_knowledge: %s has no MLM head; training a new one", backbone.name)
        if weight.shape[0] != self.vocab_size:
            raise KadaptError(f"trelm_knowledge: head built for vocabulary {self.vocab_size}, backbone has {weight.shape[0]}")
        self.embeddings = weight.detach()

    def _require_bound(self) -> None:
        if self.head is None or self.embeddings.numel() == 0:
            raise KadaptError("trelm_knowledge: bind it to a model (bind / bind_backbone) before using the objective")

    # ------------------------------------------------------------------ data
    def encode(self, record, tokenizer, max_length: int) -> dict:
        if not isinstance(record, RelationExample):
            raise KadaptError(f"trelm_knowledge reads entity-annotated sentences (RelationExample), got {type(record).__name__}")
        return encode_trelm(record, tokenizer, max_length, self.mlm_probability, self.both_directions)

    # ------------------------------------------------------------------ scoring
    def _hidden(self, features: torch.Tensor) -> torch.Tensor:
        return features[..., -self.hidden_size:]

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        self._require_bound()
        t = self.head.transform(hidden)
        return t @ self.embeddings.to(t.dtype).T + self.head.bias

    def sample_negatives(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, num_negatives) tokens from Q: uniform over the vocabulary without the true token."""
        shift = torch.randint(1, self.vocab_size, (labels.shape[0], self.num_negatives), device=labels.device)
        return (labels[:, None] + shift) % self.vocab_size

    def candidate_scores(self, hidden: torch.Tensor, labels: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """f(h, y) for [true, negatives...]: (N, 1 + num_negatives)."""
        self._require_bound()
        t = self.head.transform(hidden)
        cand = torch.cat([labels[:, None], negatives], dim=1)
        emb = self.embeddings.to(t.dtype)[cand]
        return torch.einsum("nh,nch->nc", t, emb) + self.head.bias[cand]

    def knowledge_probability(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        """P_x (eq. 9): per row, the mean sampled-softmax probability of the true object tokens; uses
        ``batch["cka_negatives"]`` (B, S, n) when present so repeated copies share their negatives."""
        labels = batch["cka_labels"]
        where = labels != IGNORE
        if "cka_negatives" not in batch:
            batch = {**batch, "cka_negatives": self.sample_negatives(labels.clamp_min(0).flatten()).view(*labels.shape, -1)}
        probs = self.candidate_scores(hidden[where], labels[where], batch["cka_negatives"][where]).softmax(-1)[:, 0]
        per_row = torch.zeros(labels.shape[0], dtype=probs.dtype, device=probs.device).index_add(
            0, torch.nonzero(where)[:, 0], probs)
        return per_row / where.sum(1).clamp_min(1)

    # ------------------------------------------------------------------ loss
    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        hidden = self._hidden(features)
        cka_labels = batch["cka_labels"]
        target = cka_labels != IGNORE
        obj_logits = self.vocab_logits(hidden[target])
        if "si_important" in batch:  # training with inject_si_targets: CKA at the SI-important rows only
            cka_labels = cka_labels.masked_fill(~batch["si_important"][:, None], IGNORE)
            target = cka_labels != IGNORE
        loss = None
        if "mlm_labels" in batch:
            labels = cka_labels[target]
            scores = self.candidate_scores(hidden[target], labels, self.sample_negatives(labels))
            cka = F.cross_entropy(scores.float(), torch.zeros_like(labels)) if labels.numel() else hidden.sum() * 0
            mlm_where = batch["mlm_labels"] != IGNORE
            if mlm_where.any():
                mlm = F.cross_entropy(self.vocab_logits(hidden[mlm_where]).float(), batch["mlm_labels"][mlm_where])
            else:
                mlm = hidden.sum() * 0
            loss = self.theta * mlm + (1 - self.theta) * cka
        return ObjectiveOutput(loss, obj_logits)

    # ------------------------------------------------------------------ metrics
    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        gold = batch["cka_labels"][batch["cka_labels"] != IGNORE]
        return {"tokens": float(gold.numel()), "correct": float((logits.argmax(-1) == gold).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"object_top1": safe_div(counts["correct"], counts["tokens"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return logits.argmax(-1).tolist()

    def config_dict(self) -> dict:
        return {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size, "theta": self.theta,
                "num_negatives": self.num_negatives, "mlm_probability": self.mlm_probability,
                "inject_both_directions": self.both_directions}
