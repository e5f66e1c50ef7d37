"""KG question answering, MetaQA-style (JAKET §Question Answering over KG): rank the k-hop neighbours
of the question's topic entity.

Data: MetaQA's official layout. Questions (``data.format: metaqa``): ``N-hop/vanilla/qa_*.txt`` lines
``question with [topic entity]<TAB>answer1|answer2``; the KB (``objective.config.kg``) is a folder with
``kb.txt`` (``head|relation|tail``; read by :func:`kadapt.kg.readers.read_metaqa_kb`). The topic mention
is linked to its entity in the question's ``token_entities``, so a JAKET plug-in merges its knowledge
there (re-entrant placement) and the question encoding is ``[backbone_last ; ... ; JAKET LM2]`` at the
first token. Candidates are every entity within ``hops`` hops of the topic (edges read both ways, the
topic itself excluded); a candidate's encoding is JAKET's KG-side embedding (memory + GAT). Score =
<W q, e>; loss = binary cross-entropy over the candidates (several answers per question). Metric:
Hits@1 (the top candidate is an answer; questions whose answers are outside the candidate set count
as misses), plus ``answer_coverage`` (share of questions with an answer among the candidates).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.policy import ErrorPolicy
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError, KadaptError
from kadapt.kg.graph import CSR
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    safe_div,
)

log = logging.getLogger(__name__)
TASK = "kgqa"
_TOPIC = re.compile(r"\[([^\]]+)\]")


@dataclass
class KGQARecord:
    """One MetaQA question: text without the brackets, the topic's character span, the answer names."""

    question: str
    topic: str
    topic_span: tuple[int, int]
    answer: tuple[str, ...]
    source: str = ""


def parse_metaqa_line(line: str, path: str | Path, number: int) -> KGQARecord:
    text, tab, answers = line.partition("\t")
    if not tab or not answers.strip():
        raise DataError(path, number, "expected 'question with [topic]<TAB>answer1|answer2'")
    match = _TOPIC.search(text)
    if match is None:
        raise DataError(path, number, "no [topic entity] in brackets in the question")
    question = text[:match.start()] + match.group(1) + text[match.end():]
    span = (match.start(), match.start() + len(match.group(1)))
    names = tuple(a.strip() for a in answers.split("|") if a.strip())
    return KGQARecord(question, match.group(1).strip(), span, names, f"{path}:{number}")


def read_metaqa_questions(path: str | Path, policy: ErrorPolicy | None = None) -> list[KGQARecord]:
    """Every question of a MetaQA ``qa_*.txt`` file; bad lines go through ``policy``."""
    path = Path(path)
    policy = policy or ErrorPolicy("raise")
    if not path.is_file():
        raise DataError(str(path), None, "MetaQA question file not found")
    records = []
    with policy.scope(path):
        for number, raw in iter_raw_lines(path):
            try:
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise DataError(path, number, f"not UTF-8 ({err.reason} at byte {err.start})") from None
                if not line.strip():
                    continue
                records.append(parse_metaqa_line(line, path, number))
            except DataError as err:
                policy.handle(err)
    return records


def khop_candidates(csr: CSR, entity: int, hops: int) -> list[int]:
    """Sorted entities reachable from ``entity`` in 1..``hops`` steps of ``csr`` (``entity`` excluded)."""
    seen = {entity}
    frontier = [entity]
    for _ in range(hops):
        nxt = []
        for node in frontier:
            for nb in csr.neighbors[csr.indptr[node]:csr.indptr[node + 1]].tolist():
                if nb not in seen:
                    seen.add(nb)
                    nxt.append(nb)
        frontier = nxt
    seen.discard(entity)
    return sorted(seen)


class KGQA(Objective):
    """Scores the topic's k-hop neighbours against the question encoding."""

    name = TASK
    main_metric = "hits_at_1"

    def __init__(self, feature_size: int, kg: str, memory: str | None = None, hops: int = 1,
                 max_candidates: int = 0, dropout: float = 0.1):
        super().__init__(feature_size)
        if hops < 1:
            raise KadaptError(f"{TASK}: hops must be >= 1, got {hops}")
        self.kg, self.memory, self.hops, self.max_candidates = kg, memory, hops, max_candidates
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.project: nn.Linear | None = None
        self.graph = None

    def bind(self, model) -> None:
        """Attach the KB to the model's JAKET plug-in; size the question projection to it."""
        from kadapt.plugins.jaket.kg_context import attach_kg, single_jaket_plugin
        from kadapt.core.paths import resolve_path

        plugin = single_jaket_plugin(model, TASK)
        self.graph = attach_kg(model, resolve_path(self.kg), resolve_path(self.memory) if self.memory else None)
        self._csr = self.graph.csr(True)
        self.project = nn.Linear(self.feature_size, plugin.output_size)

    def encode(self, record: KGQARecord, tokenizer, max_length: int) -> dict:
        if self.graph is None:
            raise KadaptError(f"{TASK}: head not bound to a model (bind) yet")
        try:
            topic = self.graph.entity_index(record.topic)
        except KadaptError:
            raise DataError(record.source, None, f"topic entity {record.topic!r} is not in the KB") from None
        candidates = khop_candidates(self._csr, topic, self.hops)
        if not candidates:
            raise DataError(record.source, None, f"topic entity {record.topic!r} has no neighbour within {self.hops} hop(s)")
        if self.max_candidates and len(candidates) > self.max_candidates:
            raise DataError(record.source, None, f"{len(candidates)} candidates > max_candidates {self.max_candidates}")
        enc = tokenizer(record.question, truncation=True, max_length=max_length, return_offsets_mapping=True)
        lo, hi = record.topic_span
        token_entities = [topic if (e > s and s < hi and e > lo) else -1 for s, e in enc["offset_mapping"]]
        if topic not in token_entities:
            raise DataError(record.source, None, f"topic mention {record.topic!r} cut off at max_length {max_length}")
        answers = set(record.answer)
        names = self.graph.entity_names
        return {"input_ids": list(enc["input_ids"]), "token_entities": token_entities, "candidates": candidates,
                "candidate_labels": [int(names[c] in answers) for c in candidates]}

    def step(self, model, batch: dict) -> ObjectiveOutput:
        from kadapt.plugins.jaket.kg_context import single_jaket_plugin

        if self.project is None:
            raise KadaptError(f"{TASK}: head not bound to a model (bind) yet")
        feats = model.features(batch["input_ids"], batch["attention_mask"], batch=batch)
        question = self.project(self.dropout(feats[:, 0].to(self.project.weight.dtype)))
        candidates = batch["candidates"]
        valid = candidates >= 0
        embedded = single_jaket_plugin(model, TASK).entity_embeddings(candidates[valid]).to(question.dtype)
        cand = question.new_zeros(*candidates.shape, question.shape[-1]).masked_scatter(valid.unsqueeze(-1), embedded)
        logits = (cand * question.unsqueeze(1)).sum(-1)
        loss = None
        if "candidate_labels" in batch:
            loss = F.binary_cross_entropy_with_logits(logits[valid].float(), batch["candidate_labels"][valid].float())
        return ObjectiveOutput(loss, logits.masked_fill(~valid, torch.finfo(logits.dtype).min))

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        labels = batch["candidate_labels"].clamp(min=0)
        top = logits.argmax(-1, keepdim=True)
        hits = labels.gather(1, top).squeeze(1) == 1
        return {"n": float(hits.numel()), "hits": float(hits.sum()), "answerable": float((labels == 1).any(1).sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"hits_at_1": safe_div(counts["hits"], counts["n"]),
                "answer_coverage": safe_div(counts["answerable"], counts["n"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        top = batch["candidates"].gather(1, logits.argmax(-1, keepdim=True)).squeeze(1)
        return [self.graph.entity_names[i] for i in top.tolist()]

    def config_dict(self) -> dict:
        return {"kg": self.kg, "memory": self.memory, "hops": self.hops, "max_candidates": self.max_candidates,
                "dropout": self._dropout_p}
