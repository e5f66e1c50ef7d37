"""Few-shot relation classification, FewRel N-way K-shot, with the PAIR framework (Gao et al. 2019).

An *episode* is one query instance and N classes with K support instances each. PAIR encodes every
(query, support) pair jointly as one sentence pair (both sentences carry ``@``/``#`` entity markers),
scores the pair, and takes the mean score over a class's K supports as that class's logit; training
is cross-entropy over the N classes. The pair score comes from the features at the four entity
markers (``pooling="markers"``, default: ``MLP([q; s; q*s; |q-s|])`` with q, s the concatenated marker
features of query and support) or from the first token (``pooling="cls"``, the original PAIR over
BERT's [CLS]). Under a frozen backbone the marker features carry far more than [CLS].

Episodes are sampled (seeded) in :meth:`FewShotPair.prepare_records` from the relation records a
reader yields: ``holdout_relations > 0`` sets that many relations aside (chosen with
``relation_seed``) for dev/test episodes and trains on episodes of the others, so one FewRel file
gives relation-disjoint train and test sets; with 0, every split samples from all of its relations
(use separate train/val files, as FewRel's own split does).

An encoded episode is a *grouped* input: ``input_ids`` holds N·K pair sequences, which ``collate`` pads
to (B, N·K, S) and ``KnowledgeModel`` runs as one (B·N·K, S) backbone pass, handing the head
(B, N·K, S, F) features.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.encoding import _check_fast, _check_relation, _inner_span, _insert_markers
from kadapt.data.mentions import EntityLinking, Mention, token_entities
from kadapt.data.records import RelationExample
from kadapt.core.errors import DataError, KadaptError
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)

_SPLIT_OFFSET = {"train": 0, "dev": 1, "test": 2}


@dataclass(frozen=True)
class FewShotEpisode:
    """One query and ``len(classes)`` classes of K support instances; ``label`` = index of the query's class."""

    query: RelationExample
    support: tuple[tuple[RelationExample, ...], ...]
    classes: tuple[str, ...]
    label: int
    source: str = ""


def sample_episodes(records: list[RelationExample], n_way: int, k_shot: int, count: int,
                    seed: int) -> list[FewShotEpisode]:
    """``count`` episodes: N random relations, K supports each, one query from one of them (no overlap)."""
    by_relation: dict[str, list[RelationExample]] = defaultdict(list)
    for r in records:
        by_relation[r.label].append(r)
    usable = sorted(rel for rel, items in by_relation.items() if len(items) >= k_shot + 1)
    if len(usable) < n_way:
        raise KadaptError(f"{n_way}-way {k_shot}-shot episodes need {n_way} relations with at least "
                          f"{k_shot + 1} instances each; found {len(usable)}")
    rng = random.Random(seed)
    episodes = []
    for index in range(count):
        classes = rng.sample(usable, n_way)
        target = rng.randrange(n_way)
        support = []
        query = None
        for i, rel in enumerate(classes):
            picked = rng.sample(by_relation[rel], k_shot + (1 if i == target else 0))
            if i == target:
                query = picked.pop()
            support.append(tuple(picked))
        episodes.append(FewShotEpisode(query, tuple(support), tuple(classes), target,
                                       f"episode#{index} query={query.source}"))
    return episodes


def _pair_entities(enc, texts: list[tuple[str, list[int], RelationExample]], linking: EntityLinking) -> list[int]:
    """``token_entities`` of a marked (query, support) pair: each sequence's gold (and linker) mentions
    mapped on its own tokens; the pair counts as linked for each of the four entities whose tokens got a row."""
    seq_ids = enc.sequence_ids()
    out = [-1] * len(seq_ids)
    targets = []
    for seq, (text, pos, ex) in enumerate(texts):
        other = [int(sid != seq) for sid in seq_ids]
        gold = [Mention(*_inner_span(text, pos[0] + 1, pos[1]), ex.subj_id),
                Mention(*_inner_span(text, pos[2] + 1, pos[3]), ex.obj_id)]
        rows = token_entities(enc["offset_mapping"], other, len(text), linking.mentions(text, gold), linking.rows, linking.stats)
        out = [r if r >= 0 else o for r, o in zip(rows, out)]
        for g in gold:
            targets.append(any(r >= 0 and not sp and s < g.end and g.start < e
                               for r, sp, (s, e) in zip(rows, other, enc["offset_mapping"])))
    linking.stats.instance(targets)
    return out


def encode_pair(query: RelationExample, support: RelationExample, tokenizer, max_length: int,
                linking: EntityLinking | None = None) -> dict:
    """Token ids of the marked (query, support) sentence pair and the four opening-marker positions."""
    _check_relation(query)
    _check_relation(support)
    q_text, q_pos = _insert_markers(query.text, query.subj_span, query.obj_span)
    s_text, s_pos = _insert_markers(support.text, support.subj_span, support.obj_span)
    enc = tokenizer(q_text, s_text, truncation="longest_first", max_length=max_length,
                    return_offsets_mapping=True, return_special_tokens_mask=True)
    wanted = {(0, q_pos[0]): -1, (0, q_pos[2]): -1, (1, s_pos[0]): -1, (1, s_pos[2]): -1}
    for t, (seq, (s, e)) in enumerate(zip(enc.sequence_ids(), enc["offset_mapping"])):
        if seq is None or s >= e:
            continue
        for (which, p) in wanted:
            if which == seq and s <= p < e:
                wanted[(which, p)] = t
    found = list(wanted.values())
    if min(found) < 0:
        where = query.source if min(found[:2]) < 0 else support.source
        raise DataError(where or "<example>", None, f"entity cut off by truncation of the pair (max_length={max_length})")
    out = {"input_ids": list(enc["input_ids"]), "positions": found}
    if linking is not None:
        out["token_entities"] = _pair_entities(enc, [(q_text, q_pos, query), (s_text, s_pos, support)], linking)
    return out


@register_objective
class FewShotPair(Objective):
    name = "fewshot_pair"
    main_metric = "accuracy"

    def __init__(self, feature_size: int, n_way: int = 5, k_shot: int = 1, train_episodes: int = 2000,
                 eval_episodes: int = 500, dev_episodes: int | None = None, holdout_relations: int = 0, relation_seed: int = 0,
                 pooling: str = "markers", hidden_size: int = 256, dropout: float = 0.1):
        super().__init__(feature_size)
        if pooling not in ("markers", "cls"):
            raise ValueError(f"pooling must be 'markers' or 'cls', got {pooling!r}")
        if n_way < 2 or k_shot < 1:
            raise ValueError(f"need n_way >= 2 and k_shot >= 1, got {n_way}-way {k_shot}-shot")
        self.n_way, self.k_shot = n_way, k_shot
        self.train_episodes, self.eval_episodes = train_episodes, eval_episodes
        self.dev_episodes = eval_episodes if dev_episodes is None else dev_episodes
        self.holdout_relations, self.relation_seed = holdout_relations, relation_seed
        self.pooling, self.hidden_size, self._dropout_p = pooling, hidden_size, dropout
        self.dropout = nn.Dropout(dropout)
        if pooling == "markers":
            self.scorer = nn.Sequential(nn.Linear(8 * feature_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))
        else:
            self.scorer = nn.Linear(feature_size, 1)
        self.linking = None  # the model's entity linking (token_entities for JAKET), set by bind

    def bind(self, model) -> None:
        """Encode ``token_entities`` per pair row when a plug-in of ``model`` links entity mentions."""
        self.linking = model.entity_linking()

    # ------------------------------------------------------------------ data

    def prepare_records(self, records: list, split: str, seed: int) -> list[FewShotEpisode]:
        """Relation instances of one split -> seeded episodes (relation-disjoint with ``holdout_relations``)."""
        if self.linking is not None:
            self.linking.start(split)
        if not records:
            return []
        relations = sorted({r.label for r in records})
        if self.holdout_relations:
            if self.holdout_relations >= len(relations):
                raise KadaptError(f"holdout_relations={self.holdout_relations} leaves no training relation "
                                  f"({len(relations)} relations)")
            held = set(random.Random(self.relation_seed).sample(relations, self.holdout_relations))
            keep = (lambda rel: rel not in held) if split == "train" else (lambda rel: rel in held)
            records = [r for r in records if keep(r.label)]
        count = {"train": self.train_episodes, "dev": self.dev_episodes}.get(split, self.eval_episodes)
        return sample_episodes(records, self.n_way, self.k_shot, count, seed * 1000 + _SPLIT_OFFSET.get(split, 3))

    def encode(self, record: FewShotEpisode, tokenizer, max_length: int) -> dict:
        _check_fast(tokenizer)
        if len(record.support) != self.n_way or any(len(s) != self.k_shot for s in record.support):
            raise DataError(record.source or "<episode>", None,
                            f"episode is not {self.n_way}-way {self.k_shot}-shot")
        pairs = [encode_pair(record.query, s, tokenizer, max_length, self.linking) for cls in record.support for s in cls]
        out = {"input_ids": [p["input_ids"] for p in pairs], "labels": record.label}
        if self.linking is not None:  # JAKET: entity row per token of each pair row
            out["token_entities"] = [p["token_entities"] for p in pairs]
        for k, key in enumerate(("q_subj_pos", "q_obj_pos", "s_subj_pos", "s_obj_pos")):
            out[key] = [p["positions"][k] for p in pairs]
        return out

    # ------------------------------------------------------------------ model

    def kept_positions(self) -> tuple[str, ...] | None:
        return ("q_subj_pos", "q_obj_pos", "s_subj_pos", "s_obj_pos") if self.pooling == "markers" else None

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        """``features``: (B, N·K, S, F) from grouped inputs -> logits (B, N)."""
        if features.dim() != 4:
            raise KadaptError("fewshot_pair needs grouped inputs (batch, pairs, tokens, features)")
        if self.pooling == "cls":
            pair = features[:, :, 0]
        else:
            def at(key: str) -> torch.Tensor:
                idx = batch[key][..., None, None].expand(-1, -1, 1, features.shape[-1])
                return features.gather(2, idx).squeeze(2)

            q = torch.cat([at("q_subj_pos"), at("q_obj_pos")], dim=-1)
            s = torch.cat([at("s_subj_pos"), at("s_obj_pos")], dim=-1)
            pair = torch.cat([q, s, q * s, (q - s).abs()], dim=-1)
        scores = self.scorer(self.dropout(pair)).squeeze(-1)  # (B, N*K)
        logits = scores.view(scores.shape[0], self.n_way, self.k_shot).mean(-1)
        loss = F.cross_entropy(logits, batch["labels"]) if "labels" in batch else None
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        return {"n": float(logits.shape[0]), "correct": float((logits.argmax(-1) == batch["labels"]).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"accuracy": safe_div(counts["correct"], counts["n"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return logits.argmax(-1).tolist()

    def config_dict(self) -> dict:
        return {"n_way": self.n_way, "k_shot": self.k_shot, "train_episodes": self.train_episodes,
                "eval_episodes": self.eval_episodes, "dev_episodes": self.dev_episodes, "holdout_relations": self.holdout_relations,
                "relation_seed": self.relation_seed, "pooling": self.pooling, "hidden_size": self.hidden_size,
                "dropout": self._dropout_p}
