"""Scoring rules shared by the task heads (summable counts) and the packaged ``evaluate`` modules.

Extractive QA follows the official scripts' definitions:

* SQuAD v1.1 (``scheme="squad"``): lowercase, drop ASCII punctuation (``string.punctuation``), drop the
  articles a/an/the, collapse whitespace; F1 over whitespace tokens (bag overlap), max over the gold
  answers; EM = normalised strings equal.
* MLQA (``scheme="mlqa"``): punctuation is every Unicode ``P*`` character plus ASCII punctuation;
  articles per language (en a/an/the; es un/una/unos/unas/el/la/los/las; de
  ein/eine/einen/einem/eines/einer/der/die/das/den/dem/des; vi của/là/cái/chiếc/những; ar: the
  script's pattern, which removes every ``ال``; hi, zh: none); tokens are whitespace-split, except zh
  (mixed segmentation: each CJK character and punctuation mark is its own token).
  Languages outside MLQA's seven are treated as whitespace languages without articles (the official
  script rejects them).

Entity F1 follows conlleval / seqeval's default (IOB2/IOB1-tolerant) chunking: a chunk starts at B-X,
at I-X after O or after a chunk of another type, and at S-X; it ends before the next chunk start, an
O, or a type change. A predicted chunk counts when its type, start and end all match a gold one.
"""
from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "ar": r"\sال^|ال",
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


@lru_cache(maxsize=1)
def unicode_punctuation() -> frozenset[str]:
    return frozenset(chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")) | frozenset(string.punctuation)


def _mixed_segmentation(text: str, punct: frozenset[str]) -> list[str]:
    tokens, pending = [], ""
    for char in text:
        if _CJK.match(char) or char in punct:
            tokens.extend(pending.split())
            pending = ""
            tokens.append(char)
        else:
            pending += char
    tokens.extend(pending.split())
    return tokens


def answer_tokens(text: str, language: str = "en", scheme: str = "squad") -> list[str]:
    """The normalised answer as tokens (EM compares their join, F1 their bags)."""
    if scheme not in ("squad", "mlqa"):
        raise ValueError(f"scheme must be 'squad' or 'mlqa', got {scheme!r}")
    text = text.lower()
    if scheme == "squad":
        text = "".join(ch for ch in text if ch not in set(string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", text).split()
    punct = unicode_punctuation()
    text = "".join(ch for ch in text if ch not in punct)
    if language in _ARTICLES:
        text = re.sub(_ARTICLES[language], " ", text)
    tokens = _mixed_segmentation(text, punct) if language == "zh" else text.split()
    return [t for t in tokens if t.strip()]


def normalize_answer(text: str, language: str = "en", scheme: str = "squad") -> str:
    return " ".join(answer_tokens(text, language, scheme))


def qa_scores(prediction: str, golds: Sequence[str], language: str = "en", scheme: str = "squad") -> tuple[float, float]:
    """(exact match, F1) of one prediction, each the max over the gold answers (0/1 and 0..1)."""
    if not golds:
        return 0.0, 0.0
    pred = answer_tokens(prediction, language, scheme)
    em, f1 = 0.0, 0.0
    for gold_text in golds:
        gold = answer_tokens(gold_text, language, scheme)
        em = max(em, float(pred == gold))
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            f1 = max(f1, 2 * precision * recall / (precision + recall))
    return em, f1


def bio_chunks(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entity chunks ``(type, start, end_inclusive)`` of a tag sequence (conlleval rules)."""
    chunks, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-") if tag != "O" else ("O", "", "")
        begins = prefix in ("B", "S") or (prefix in ("I", "E") and (kind != label or start is None))
        if start is not None and (prefix == "O" or begins):
            chunks.add((kind, start, i - 1))
            start, kind = None, None
        if begins:
            start, kind = i, label
        if prefix in ("E", "S") and start is not None:
            chunks.add((kind, start, i))
            start, kind = None, None
    return chunks


def span_counts(pred: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    p, g = bio_chunks(pred), bio_chunks(gold)
    return {"tp": float(len(p & g)), "pred": float(len(p)), "gold": float(len(g))}


def prf(tp: float, pred: float, gold: float) -> dict[str, float]:
    precision = tp / pred if pred else 0.0
    recall = tp / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
