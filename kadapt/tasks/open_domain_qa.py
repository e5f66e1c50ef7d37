"""Open-domain QA over retrieved paragraphs (SearchQA, Quasar-T; K-Adapter §4.2), on the extractive
QA head.

Training (distant supervision, as in the DS-QA setting of Lin et al. 2018): every paragraph of a
question in which a gold answer occurs (case-insensitive, at word boundaries) becomes one SQuAD-style
example ``(question, paragraph)`` with that occurrence as its span. Paragraphs without an answer carry
no span and are dropped from training; how many were dropped (and how many questions lost every
paragraph) is logged. ``max_paragraphs`` keeps only the first N retrieved paragraphs of a question,
for training and evaluation alike.

Evaluation: all (kept) paragraphs of a question are encoded as windows of ONE example, so the
extractive head picks the best span over every paragraph of the question (a span never crosses a
paragraph: it lies inside one window). Scored with the SQuAD normalisation EM/F1 against all gold
answers, as the DS-QA and K-Adapter evaluations do.
"""
from __future__ import annotations

import logging
import re

from kadapt.data.records import OpenQAExample, QAExample
from kadapt.core.errors import DataError
from kadapt.core.objective import register_objective
from kadapt.tasks.extractive_qa import IGNORE, LANGUAGES, ExtractiveQA, _codes

log = logging.getLogger(__name__)

#: Characters between two paragraphs in the joined context the predicted span is cut from.
SEPARATOR = "\n\n"


def locate_answer(paragraph: str, answers: list[str]) -> tuple[str, int] | None:
    """The first gold answer found in ``paragraph`` (case-insensitive, whole words) as ``(text, start)``
    with the paragraph's own characters, or ``None``."""
    for answer in answers:
        match = re.search(r"(?<!\w)" + re.escape(answer.strip()) + r"(?!\w)", paragraph, flags=re.IGNORECASE)
        if match:
            return match.group(0), match.start()
    return None


@register_objective
class OpenDomainQA(ExtractiveQA):
    name = "open_domain_qa"

    def __init__(self, feature_size: int, doc_stride: int = 128, max_answer_tokens: int = 30,
                 max_question_tokens: int = 64, dropout: float = 0.1, max_paragraphs: int | None = None):
        super().__init__(feature_size, doc_stride=doc_stride, max_answer_tokens=max_answer_tokens, scheme="squad",
                         max_question_tokens=max_question_tokens, dropout=dropout)
        if max_paragraphs is not None and max_paragraphs < 1:
            raise ValueError(f"max_paragraphs must be >= 1 or null, got {max_paragraphs}")
        self.max_paragraphs = max_paragraphs

    def _kept(self, record: OpenQAExample) -> tuple[str, ...]:
        return record.paragraphs[: self.max_paragraphs] if self.max_paragraphs else record.paragraphs

    def prepare_records(self, records: list, split: str, seed: int) -> list:
        """Training: one QA example per answer-bearing paragraph; other splits: the questions unchanged."""
        if split != "train":
            return records
        out, dropped, total, lost = [], 0, 0, 0
        for r in records:
            if not isinstance(r, OpenQAExample):
                raise DataError(getattr(r, "source", "<record>"), None,
                                f"open_domain_qa needs SearchQA/Quasar-T records, got {type(r).__name__}")
            answers = [a for a, _ in r.answers]
            found = 0
            for k, paragraph in enumerate(self._kept(r)):
                total += 1
                span = locate_answer(paragraph, answers)
                if span is None:
                    dropped += 1
                    continue
                found += 1
                out.append(QAExample(f"{r.id}-p{k}", r.question, paragraph, (span,), "en", f"{r.source} paragraph {k}"))
            lost += found == 0
        log.info("open_domain_qa train: %d of %d paragraphs contain no answer and are dropped; "
                 "%d of %d questions have no answer-bearing paragraph", dropped, total, lost, len(records))
        self.last_train_counts = {"paragraphs": total, "paragraphs_without_answer": dropped,
                                  "questions": len(records), "questions_without_answer": lost}
        return out

    def encode(self, record, tokenizer, max_length: int) -> dict:
        if isinstance(record, QAExample):
            return super().encode(record, tokenizer, max_length)
        paragraphs = self._kept(record)
        question = self._question(record, tokenizer)
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - len(
            tokenizer(question, add_special_tokens=False)["input_ids"])
        if room < 2:
            raise DataError(record.source or "<example>", None,
                            f"question {record.id}: max_length {max_length} leaves no room for a paragraph")
        enc = tokenizer([question] * len(paragraphs), list(paragraphs), truncation="only_second",
                        max_length=max_length, stride=min(self.doc_stride, room // 2),
                        return_overflowing_tokens=True, return_offsets_mapping=True)
        shift, at = [], 0
        for p in paragraphs:
            shift.append(at)
            at += len(p) + len(SEPARATOR)
        starts, ends = [], []
        for w, para in enumerate(enc["overflow_to_sample_mapping"]):
            seq_ids, offsets = enc.sequence_ids(w), enc["offset_mapping"][w]
            starts.append([s + shift[para] if seq_ids[t] == 1 else -1 for t, (s, _) in enumerate(offsets)])
            ends.append([e + shift[para] if seq_ids[t] == 1 else -1 for t, (_, e) in enumerate(offsets)])
        return {
            "input_ids": [list(ids) for ids in enc["input_ids"]],
            "attention_mask": [list(m) for m in enc["attention_mask"]],
            "start_char": starts, "end_char": ends,
            "answer_window": IGNORE, "answer_start": IGNORE, "answer_end": IGNORE,
            "context_chars": _codes(SEPARATOR.join(paragraphs)),
            "answer_chars": [_codes(a) for a, _ in record.answers] or [[-1]],
            "lang_id": LANGUAGES.index("en"),
        }

    def config_dict(self) -> dict:
        config = super().config_dict()
        del config["scheme"]
        return {**config, "max_paragraphs": self.max_paragraphs}
