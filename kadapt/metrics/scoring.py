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

Relation and entity-typing scores (used by the task heads in :mod:`kadapt.tasks` and by the
``tacred_f1``, ``semeval2010_f1``, ``open_entity_f1`` and ``figer_f1`` metric modules):

* TACRED (:func:`tacred_scores`): the official scorer's micro precision / recall / F1 over the
  relations other than ``no_relation`` (a ``no_relation`` prediction is never a guess, a gold
  ``no_relation`` never a gold relation; a guess is correct when it equals the gold), plus accuracy.
* SemEval-2010 Task 8 (:func:`semeval_counts`, :func:`summarize_semeval`): scorer v1.2, evaluation
  (iii), the macro-averaged F1 of the (9+1)-way classification with directionality taken into
  account, ``Other`` excluded; micro P/R/F1 over the same types and accuracy too.
* Entity typing (:func:`typing_scores`, :func:`typing_counts`, :func:`summarize_typing`; Ling & Weld
  2012): strict accuracy, loose macro and loose micro precision / recall / F1 over label sets.

This module is the lower layer: it imports nothing from :mod:`kadapt.tasks` (nor torch).
"""
from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
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


def _safe_div(num: float, den: float) -> float:
    """``num / den`` as float, 0.0 when ``den`` is 0 (same as :func:`kadapt.core.objective.safe_div`)."""
    return float(num) / float(den) if den else 0.0


# --- TACRED -------------------------------------------------------------------------------------

NO_RELATION = "no_relation"


def tacred_scores(gold: Sequence[str], pred: Sequence[str], no_relation: str = NO_RELATION) -> dict[str, float]:
    """Micro P/R/F1 without ``no_relation`` (TACRED scorer) and plain accuracy."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    guessed = sum(p != no_relation for p in pred)
    actual = sum(g != no_relation for g in gold)
    correct = sum(g == p and p != no_relation for g, p in zip(gold, pred))
    precision, recall = _safe_div(correct, guessed), _safe_div(correct, actual)
    return {"precision": precision, "recall": recall, "micro_f1": _safe_div(2 * precision * recall, precision + recall),
            "accuracy": _safe_div(sum(g == p for g, p in zip(gold, pred)), len(gold))}


# --- SemEval-2010 Task 8 ------------------------------------------------------------------------

OTHER = "Other"
_DIRECTION = re.compile(r"\(e[12],e[12]\)$")


def relation_type(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; other labels unchanged."""
    return _DIRECTION.sub("", label)


def semeval_counts(gold: Sequence[str], pred: Sequence[str], other: str = OTHER) -> dict[str, float]:
    """Summable per-type counts: ``correct:T``, ``pred:T``, ``gold:T`` plus ``n`` and ``exact``."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    counts: dict[str, float] = {"n": 0.0, "exact": 0.0}

    def add(key: str, value: float = 1.0) -> None:
        counts[key] = counts.get(key, 0.0) + value

    for g, p in zip(gold, pred):
        gt, pt = relation_type(g), relation_type(p)
        add("n")
        add("exact", float(g == p))
        add(f"gold:{gt}")
        add(f"pred:{pt}")
        add(f"correct:{gt}", float(g == p))
    for key in [k for k in counts if k.endswith(f":{other}")]:
        counts[key.replace(f":{other}", ":__other__")] = counts.pop(key)
    return counts


def summarize_semeval(counts: dict[str, float]) -> dict[str, float]:
    """Official macro-F1 (and micro P/R/F1, accuracy) from :func:`semeval_counts`."""
    types = sorted(k.split(":", 1)[1] for k in counts if k.startswith("gold:") and counts[k] > 0
                   and k != "gold:__other__")
    f1s, ps, rs = [], [], []
    correct = proposed = answer = 0.0
    for t in types:
        c, p, g = counts.get(f"correct:{t}", 0.0), counts.get(f"pred:{t}", 0.0), counts[f"gold:{t}"]
        prec, rec = _safe_div(c, p), _safe_div(c, g)
        ps.append(prec)
        rs.append(rec)
        f1s.append(_safe_div(2 * prec * rec, prec + rec))
        correct, proposed, answer = correct + c, proposed + p, answer + g
    micro_p, micro_r = _safe_div(correct, proposed), _safe_div(correct, answer)
    n = len(types)
    return {"accuracy": _safe_div(counts.get("exact", 0.0), counts.get("n", 0.0)),
            "macro_precision": _safe_div(sum(ps), n), "macro_recall": _safe_div(sum(rs), n),
            "macro_f1": _safe_div(sum(f1s), n),
            "micro_precision": micro_p, "micro_recall": micro_r,
            "micro_f1": _safe_div(2 * micro_p * micro_r, micro_p + micro_r)}


# --- Entity typing ------------------------------------------------------------------------------

def typing_scores(gold: Sequence[Iterable[str]], pred: Sequence[Iterable[str]]) -> dict[str, float]:
    """Strict accuracy, loose macro and loose micro P/R/F1 (Ling & Weld 2012) over label sets."""
    counts = typing_counts(gold, pred)
    return summarize_typing(counts)


def typing_counts(gold: Sequence[Iterable[str]], pred: Sequence[Iterable[str]]) -> dict[str, float]:
    """Summable counts behind :func:`typing_scores`."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold label sets but {len(pred)} predictions")
    c = dict.fromkeys(("n", "exact", "macro_p", "macro_r", "pred", "gold", "correct"), 0.0)
    for g, p in zip(gold, pred):
        g, p = set(g), set(p)
        hit = len(g & p)
        c["n"] += 1
        c["exact"] += float(g == p)
        c["macro_p"] += _safe_div(hit, len(p))
        c["macro_r"] += _safe_div(hit, len(g))
        c["pred"] += len(p)
        c["gold"] += len(g)
        c["correct"] += hit
    return c


def summarize_typing(c: dict[str, float]) -> dict[str, float]:
    """Strict accuracy, loose macro and loose micro P/R/F1 from :func:`typing_counts`."""
    def f1(p: float, r: float) -> float:
        return _safe_div(2 * p * r, p + r)

    ma_p, ma_r = _safe_div(c["macro_p"], c["n"]), _safe_div(c["macro_r"], c["n"])
    mi_p, mi_r = _safe_div(c["correct"], c["pred"]), _safe_div(c["correct"], c["gold"])
    return {"strict_accuracy": _safe_div(c["exact"], c["n"]),
            "macro_precision": ma_p, "macro_recall": ma_r, "macro_f1": f1(ma_p, ma_r),
            "precision": mi_p, "recall": mi_r, "micro_f1": f1(mi_p, mi_r)}
