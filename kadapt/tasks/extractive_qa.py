"""Extractive QA (SQuAD v1.1, MLQA): start/end scores over the context tokens of every document window.

Encoding: the pair (question, context) with ``truncation="only_second"``; a context longer than
``max_length`` is cut into overlapping windows (``doc_stride`` tokens of overlap, the usual SQuAD
setting), which go through the model as rows of one (batch, windows, seq) input. A linear layer gives
each token a start and an end score; only context tokens are eligible. The scores of all windows of a
question are normalised together (shared normalisation over the whole document); training targets
the first window that contains the whole (first) gold answer.

Prediction: the best ``start <= end`` pair inside one window with at most ``max_answer_tokens``
tokens; its characters are cut from the ORIGINAL context through the offset mapping. Scoring: EM/F1
with the SQuAD or MLQA normalisation (:mod:`kadapt.metrics.scoring`), max over gold answers, averaged
over questions. The context and gold answers travel with the batch as Unicode code points, so counts
need no state outside the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.data.records import QAExample
from kadapt.core.errors import DataError
from kadapt.metrics.scoring import qa_scores
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    register_objective,
    safe_div,
)

IGNORE = -100
LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")


def _codes(text: str) -> list[int]:
    return [ord(c) for c in text]


def _text(codes: list[int]) -> str:
    return "".join(chr(c) for c in codes if c >= 0)


@register_objective
class ExtractiveQA(Objective):
    name = "extractive_qa"
    main_metric = "f1"

    def __init__(self, feature_size: int, doc_stride: int = 128, max_answer_tokens: int = 30,
                 scheme: str = "squad", max_question_tokens: int = 64, dropout: float = 0.1):
        super().__init__(feature_size)
        if scheme not in ("squad", "mlqa"):
            raise ValueError(f"scheme must be 'squad' or 'mlqa', got {scheme!r}")
        self.doc_stride, self.max_answer_tokens, self.scheme = doc_stride, max_answer_tokens, scheme
        self.max_question_tokens = max_question_tokens
        self._dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.span = nn.Linear(feature_size, 2)

    # ------------------------------------------------------------------ encoding
    def encode(self, record: QAExample, tokenizer, max_length: int) -> dict:
        if record.language not in LANGUAGES:
            raise DataError(record.source or "<example>", None,
                            f"language {record.language!r} not among MLQA's {LANGUAGES}")
        question = self._question(record, tokenizer)
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - len(
            tokenizer(question, add_special_tokens=False)["input_ids"])
        if room < 2:
            raise DataError(record.source or "<example>", None,
                            f"question {record.id}: max_length {max_length} leaves no room for the context")
        enc = tokenizer(question, record.context, truncation="only_second", max_length=max_length,
                        stride=min(self.doc_stride, room // 2), return_overflowing_tokens=True,
                        return_offsets_mapping=True)
        n_windows = len(enc["input_ids"])
        starts, ends = [], []
        for w in range(n_windows):
            seq_ids = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w]
            starts.append([s if seq_ids[t] == 1 else -1 for t, (s, _) in enumerate(offsets)])
            ends.append([e if seq_ids[t] == 1 else -1 for t, (_, e) in enumerate(offsets)])
        window, first, last = IGNORE, IGNORE, IGNORE
        if record.answers:
            text, char_start = record.answers[0]
            char_end = char_start + len(text)
            for w in range(n_windows):
                inside = [t for t in range(len(starts[w])) if starts[w][t] >= 0
                          and starts[w][t] < char_end and ends[w][t] > char_start]
                ctx = [s for s in starts[w] if s >= 0]
                if inside and ctx and min(ctx) <= char_start and max(ends[w]) >= char_end:
                    window, first, last = w, inside[0], inside[-1]
                    break
            else:
                raise DataError(record.source or "<example>", None,
                                f"question {record.id}: the answer {text!r} fits in no window of {max_length} tokens")
        return {
            "input_ids": [list(ids) for ids in enc["input_ids"]],
            "attention_mask": [list(m) for m in enc["attention_mask"]],
            "start_char": starts, "end_char": ends,
            "answer_window": window, "answer_start": first, "answer_end": last,
            "context_chars": _codes(record.context),
            "answer_chars": [_codes(a) for a, _ in record.answers] or [[-1]],
            "lang_id": LANGUAGES.index(record.language),
        }

    def _question(self, record: QAExample, tokenizer) -> str:
        """The question, cut to ``max_question_tokens`` tokens (the usual max_query_length)."""
        enc = tokenizer(record.question, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= self.max_question_tokens:
            return record.question
        return record.question[:enc["offset_mapping"][self.max_question_tokens - 1][1]]

    # ------------------------------------------------------------------ model
    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        if features.dim() != 4:
            raise ValueError(f"extractive_qa expects (batch, windows, seq, features), got {tuple(features.shape)}")
        logits = self.span(self.dropout(features))  # (B, W, S, 2)
        context = batch["start_char"] >= 0
        logits = logits.masked_fill(~context[..., None], torch.finfo(logits.dtype).min)
        loss = None
        window = batch.get("answer_window")
        if window is not None and bool((window != IGNORE).any()):
            seq = logits.shape[2]
            flat = logits.flatten(1, 2).float()  # (B, W*S, 2): all windows of a question together
            targets = [torch.where(window != IGNORE, window * seq + batch[key], IGNORE)
                       for key in ("answer_start", "answer_end")]
            loss = (F.cross_entropy(flat[..., 0], targets[0], ignore_index=IGNORE)
                    + F.cross_entropy(flat[..., 1], targets[1], ignore_index=IGNORE)) / 2
        return ObjectiveOutput(loss, logits)

    def best_spans(self, logits: torch.Tensor, batch: dict) -> list[str]:
        """The predicted answer text of each question (characters of the original context)."""
        out = []
        seq = logits.shape[2]
        allowed = torch.ones(seq, seq, dtype=torch.bool, device=logits.device).triu()
        allowed &= ~torch.ones_like(allowed).triu(self.max_answer_tokens)
        for b in range(logits.shape[0]):
            context = batch["start_char"][b] >= 0  # (W, S)
            score = logits[b, :, :, 0, None] + logits[b, :, None, :, 1]  # (W, S, S)
            valid = allowed & context[:, :, None] & context[:, None, :]
            score = score.masked_fill(~valid, float("-inf"))
            best = int(score.flatten().argmax())
            if not bool(valid.any()):
                out.append("")
                continue
            w, rest = divmod(best, seq * seq)
            i, j = divmod(rest, seq)
            start, end = int(batch["start_char"][b, w, i]), int(batch["end_char"][b, w, j])
            out.append(_text(batch["context_chars"][b].tolist())[start:end])
        return out

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        em = f1 = n = 0.0
        for b, prediction in enumerate(self.best_spans(logits, batch)):
            golds = [_text(row) for row in batch["answer_chars"][b].tolist() if _text(row)]
            if not golds:
                continue
            e, f = qa_scores(prediction, golds, LANGUAGES[int(batch["lang_id"][b])], self.scheme)
            em, f1, n = em + e, f1 + f, n + 1
        return {"n": n, "exact_match": em, "f1": f1}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"exact_match": safe_div(counts["exact_match"], counts["n"]), "f1": safe_div(counts["f1"], counts["n"]),
                "questions": counts["n"]}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return self.best_spans(logits, batch)

    def config_dict(self) -> dict:
        return {"doc_stride": self.doc_stride, "max_answer_tokens": self.max_answer_tokens,
                "scheme": self.scheme, "max_question_tokens": self.max_question_tokens, "dropout": self._dropout_p}
