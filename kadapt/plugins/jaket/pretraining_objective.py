"""JAKET pre-training objectives (§Pre-training): entity category, relation prediction, masked entity prediction.

Text examples are KG triples verbalised as ``"<head name> <relation name> <tail name>"`` with both
entity mentions linked by id (the KG carries the ids; no entity linker is needed). Per batch:

* **entity category** (L_c): CE of a linear head over E^KM of the batch's entities that have a category;
* **relation prediction** (L_r): CE of a linear head over [E^KM_h ; E^KM_t] (the edge itself is removed
  from the sampled subgraph so the answer is not read off the graph);
* **masked entity prediction** (L_e): 15% of the mentions are removed (not linked); for each,
  q = g((Z_s + Z_o) / 2) with g(x) = GELU(x W1) W2 over LM2's output, scored by inner product
  against the memory embeddings of the true entity, its neighbours and random entities (CE).

Linked text (the paper's setting): a :class:`~kadapt.data.records.RelationExample` with ``subj_id`` /
``obj_id`` (LAMA T-REx evidence sentences) is encoded as the sentence itself, its subject and object
token spans the two linked mentions and its label the relation predicted between them.

**MLM** (L_MLM, optional: ``mlm_weight > 0``): ``mlm_rate`` of the tokens outside mentions are replaced
by the mask token before the backbone pass; a head tied to the frozen input embeddings
(``LayerNorm(GELU(x W)) E^T + b``) predicts them from LM2's output.

``JaketPretrainingObjective`` follows the :class:`~kadapt.core.objective.Objective` contract: ``features`` is
LM2's output and the batch carries the knowledge embeddings the pre-training model computed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.core.errors import DataError
from kadapt.data.records import RelationExample
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    safe_div,
)

#: order of the per-batch tallies the model returns as ``logits`` (they sum across batches)
TALLIES = ("category_correct", "category_n", "relation_correct", "relation_n", "entity_correct", "entity_n",
           "mlm_correct", "mlm_n")


def linked_sentence(record: RelationExample, tokenizer, max_length: int) -> dict:
    """Token ids of a sentence and the inclusive token spans of its subject (head) and object (tail)."""
    enc = tokenizer(record.text, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    spans = []
    for a, b in (record.subj_span, record.obj_span):
        tokens = [t for t, ((s, e), sp) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"]))
                  if not sp and s < e and s < b and a < e]
        if not tokens:
            raise DataError(record.source or "<sentence>", None, f"entity cut off by truncation (max_length={max_length})")
        spans.append((tokens[0], tokens[-1]))
    return {"input_ids": list(enc["input_ids"]), "head_start": spans[0][0], "head_end": spans[0][1],
            "tail_start": spans[1][0], "tail_end": spans[1][1]}


def verbalise_triple(names: tuple[str, str, str], tokenizer, max_length: int, source: str = "triple") -> dict:
    """Token ids of ``head relation tail`` and the inclusive token spans of the two mentions."""
    pieces = [names[0], " " + names[1], " " + names[2]]
    ids = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    body = [t for piece in ids for t in piece]
    full = tokenizer.build_inputs_with_special_tokens(body)
    offset = next((i for i in range(len(full)) if full[i:i + len(body)] == body), 0)
    if len(full) > max_length:
        raise DataError(source, None, f"verbalised triple has {len(full)} tokens > max_length {max_length}")
    h_start, r_len, t_len = offset, len(ids[1]), len(ids[2])
    h_end = h_start + len(ids[0]) - 1
    t_start = h_end + 1 + r_len
    return {"input_ids": full, "head_start": h_start, "head_end": h_end,
            "tail_start": t_start, "tail_end": t_start + t_len - 1}


class JaketPretrainingObjective(Objective):
    name = "jaket_pretraining"
    main_metric = "entity_accuracy"

    def __init__(self, feature_size: int, num_categories: int = 0, num_relations: int = 1,
                 mask_rate: float = 0.15, neighbour_negatives: int = 10, random_negatives: int = 20,
                 weights: tuple[float, float, float] | list[float] = (1.0, 1.0, 1.0), names: dict | None = None,
                 mlm_weight: float = 0.0, mlm_rate: float = 0.15, vocab_size: int = 0):
        super().__init__(feature_size)
        h = feature_size
        self.num_categories, self.num_relations = num_categories, num_relations
        self.mask_rate, self.neighbour_negatives, self.random_negatives = mask_rate, neighbour_negatives, random_negatives
        self.weights = tuple(float(w) for w in weights)
        self.names = names or {}
        self.category_head = nn.Linear(h, num_categories) if num_categories else None
        self.relation_head = nn.Linear(2 * h, num_relations)
        self.entity_w1 = nn.Linear(h, h, bias=False)  # g(x) = GELU(x W1) W2
        self.entity_w2 = nn.Linear(h, h, bias=False)
        self.mlm_weight, self.mlm_rate, self.vocab_size = float(mlm_weight), float(mlm_rate), vocab_size
        if self.mlm_weight > 0:
            if vocab_size <= 0:
                raise DataError("objective.config", None, "mlm_weight > 0 needs the backbone's vocab_size")
            self.mlm_transform, self.mlm_norm = nn.Linear(h, h), nn.LayerNorm(h)
            self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))

    def encode(self, record, tokenizer, max_length: int) -> dict:
        """``record`` = (head, relation, tail) entity/relation indices (``self.names`` gives their text),
        or a linked sentence (``self.names["entity_index"]`` / ``["relation_index"]`` map its ids)."""
        if isinstance(record, RelationExample):
            feats = linked_sentence(record, tokenizer, max_length)
            ent, rel = self.names["entity_index"], self.names["relation_index"]
            feats.update(head=ent[record.subj_id], relation=rel[record.label], tail=ent[record.obj_id])
            return feats
        head, relation, tail = record
        ent, rel = self.names["entities"], self.names["relations"]
        feats = verbalise_triple((ent[head], rel[relation], ent[tail]), tokenizer, max_length,
                                 source=f"triple {ent[head]!r} {rel[relation]!r} {ent[tail]!r}")
        feats.update(head=head, relation=relation, tail=tail)
        return feats

    def entity_query(self, lm_states: torch.Tensor, rows: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        return self.entity_w2(F.gelu(self.entity_w1((lm_states[rows, start] + lm_states[rows, end]) / 2)))

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        knowledge, zero = batch["knowledge"], features.new_zeros(())
        tallies = torch.zeros(len(TALLIES), device=features.device)
        losses = []
        # entity category over the batch's distinct entities that have one
        if self.category_head is not None:
            labels = batch["root_categories"]
            valid = labels >= 0
            if bool(valid.any()):
                logits = self.category_head(knowledge[: labels.numel()][valid])
                losses.append(self.weights[0] * F.cross_entropy(logits, labels[valid]))
                tallies[0], tallies[1] = (logits.argmax(-1) == labels[valid]).sum(), valid.sum()
        # relation between the two entities of each triple
        pair = torch.cat([knowledge[batch["head_node"]], knowledge[batch["tail_node"]]], -1)
        rel_logits = self.relation_head(pair)
        losses.append(self.weights[1] * F.cross_entropy(rel_logits, batch["relation"]))
        tallies[2], tallies[3] = (rel_logits.argmax(-1) == batch["relation"]).sum(), batch["relation"].numel()
        # masked entity prediction over removed mentions
        rows, start, end, candidates = (batch[k] for k in ("masked_row", "masked_start", "masked_end", "candidates"))
        if rows.numel():
            query = self.entity_query(features, rows, start, end)
            scores = torch.einsum("mh,mch->mc", query, batch["candidate_memory"].to(query.dtype))
            duplicate = candidates == candidates[:, :1]
            duplicate[:, 0] = False
            scores = scores.masked_fill(duplicate, float("-inf"))
            target = torch.zeros(rows.numel(), dtype=torch.long, device=scores.device)
            losses.append(self.weights[2] * F.cross_entropy(scores, target))
            tallies[4], tallies[5] = (scores.argmax(-1) == 0).sum(), rows.numel()
        if self.mlm_weight > 0 and "mlm_labels" in batch:
            labels = batch["mlm_labels"]
            at = labels >= 0
            if bool(at.any()):
                hidden = self.mlm_norm(F.gelu(self.mlm_transform(features[at])))
                logits = hidden @ batch["mlm_decoder"].to(hidden.dtype).T + self.mlm_bias
                losses.append(self.mlm_weight * F.cross_entropy(logits, labels[at]))
                tallies[6], tallies[7] = (logits.argmax(-1) == labels[at]).sum(), at.sum()
        loss = torch.stack(losses).sum() if losses else zero
        return ObjectiveOutput(loss, tallies)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        return {name: float(v) for name, v in zip(TALLIES, logits.tolist())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        out = {
            "category_accuracy": safe_div(counts["category_correct"], counts["category_n"]),
            "relation_accuracy": safe_div(counts["relation_correct"], counts["relation_n"]),
            "entity_accuracy": safe_div(counts["entity_correct"], counts["entity_n"]),
        }
        if counts.get("mlm_n"):
            out["mlm_accuracy"] = safe_div(counts["mlm_correct"], counts["mlm_n"])
        return out

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return [dict(zip(TALLIES, logits.tolist()))]

    def config_dict(self) -> dict:
        return {"num_categories": self.num_categories, "num_relations": self.num_relations,
                "mask_rate": self.mask_rate, "neighbour_negatives": self.neighbour_negatives,
                "random_negatives": self.random_negatives, "weights": list(self.weights),
                **({"mlm_weight": self.mlm_weight, "mlm_rate": self.mlm_rate, "vocab_size": self.vocab_size}
                   if self.mlm_weight > 0 else {})}
