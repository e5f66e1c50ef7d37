"""Readers of downstream task formats, each in its official layout.

- ``cosmosqa``: CosmosQA JSON Lines ``{"id", "context", "question", "answer0".."answer3", "label"}``
  (``label`` absent in the unlabelled test file).
- ``squad`` / ``mlqa``: SQuAD v1.1 JSON ``{"version", "data": [{"title", "paragraphs": [{"context",
  "qas": [{"id", "question", "answers": [{"answer_start", "text"}]}]}]}]}``; MLQA files use the same
  layout, their language is taken from the file name (``*-context-XX-question-YY.json`` → ``XX``).
- ``xnli``: XNLI TSV with a header: ``xnli.dev/test.tsv`` (``language``, ``gold_label``,
  ``sentence1``, ``sentence2``, ...) or the XNLI-MT training files (``premise``, ``hypo``, ``label``;
  their ``contradictory`` is the dev/test files' ``contradiction``).
- ``conll_ner``: CoNLL-2003 columns (space-separated, tag last, ``-DOCSTART-`` lines and blank lines
  between sentences).
- ``conllu_upos``: UD CoNLL-U through :func:`kadapt.data.conllu.read_conllu`, words + UPOS.
- ``text_lines``: raw text, one record per non-empty line; WikiText's `` = Heading = `` lines are left
  out (K-Adapter trains its LAMA MLM layer on raw WikiText-2).

Every problem is a :class:`DataError` naming the file and line (or JSON key), or a counted skip.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from kadapt.data.conllu import read_conllu
from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import (
    MultipleChoiceExample,
    QAExample,
    SentencePairExample,
    TaggingExample,
    TextExample,
)
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError

UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
             "PUNCT", "SCONJ", "SYM", "VERB", "X")
NLI_LABELS = {"entailment": "entailment", "neutral": "neutral", "contradiction": "contradiction",
              "contradictory": "contradiction"}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    for lineno, raw in iter_raw_lines(path):
        try:
            yield lineno, raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise DataError(path, lineno, f"invalid UTF-8 at byte {exc.start}") from None


def _text(obj: dict, key: str, path: Path, line: int | None, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, line, f"{where}field {key!r} must be a non-empty string, got {value!r}")
    return value


# --------------------------------------------------------------------------------- CosmosQA
def read_cosmosqa(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[MultipleChoiceExample]:
    path, policy = Path(path), ErrorPolicy.resolve(policy)
    with policy.scope(path):
        for lineno, line in _lines(path):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(path, lineno, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
                if not isinstance(obj, dict):
                    raise DataError(path, lineno, "expected a JSON object")
                choices = tuple(_text(obj, f"answer{i}", path, lineno) for i in range(4))
                label = obj.get("label")
                if label is not None:
                    if not str(label).strip().isdigit() or not 0 <= int(label) < 4:
                        raise DataError(path, lineno, f"label must be 0..3, got {label!r}")
                    label = int(label)
                yield MultipleChoiceExample(str(obj.get("id", f"{path.name}:{lineno}")),
                                            _text(obj, "context", path, lineno), _text(obj, "question", path, lineno),
                                            choices, label, f"{path}:{lineno}")
            except DataError as err:
                policy.handle(err)


# --------------------------------------------------------------------------------- SQuAD / MLQA
_MLQA_LANG = re.compile(r"context-([a-z]{2})-question-[a-z]{2}")


def squad_language(path: Path) -> str:
    """MLQA's context language from its file name; ``en`` for SQuAD files."""
    found = _MLQA_LANG.search(path.name)
    return found.group(1) if found else "en"


def read_squad(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[QAExample]:
    path, policy = Path(path), ErrorPolicy.resolve(policy)
    raw = "\n".join(line for _, line in _lines(path))
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(path, None, 'expected a SQuAD JSON object with a "data" list')
    language = squad_language(path)
    with policy.scope(path):
        for a, article in enumerate(doc["data"]):
            for p, para in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
                for q, qa in enumerate(para.get("qas", []) if isinstance(para, dict) else []):
                    key = f"data[{a}].paragraphs[{p}].qas[{q}]"
                    try:
                        yield _squad_record(path, key, para, qa, language)
                    except DataError as err:
                        policy.handle(err)


def _squad_record(path: Path, key: str, para: dict, qa: dict, language: str) -> QAExample:
    context = _text(para, "context", path, None, f"{key}: ")
    if not isinstance(qa, dict):
        raise DataError(path, None, f"{key}: expected an object")
    qid = str(qa.get("id", key))
    answers = []
    for i, ans in enumerate(qa.get("answers", [])):
        text, start = ans.get("text") if isinstance(ans, dict) else None, ans.get("answer_start") if isinstance(ans, dict) else None
        if not isinstance(text, str) or not isinstance(start, int):
            raise DataError(path, None, f"{key}.answers[{i}] (id {qid}): needs 'text' (str) and 'answer_start' (int)")
        if context[start:start + len(text)] != text:
            raise DataError(path, None, f"{key}.answers[{i}] (id {qid}): context[{start}:{start + len(text)}] is "
                            f"{context[start:start + len(text)]!r}, not the answer {text!r}")
        answers.append((text, start))
    return QAExample(qid, _text(qa, "question", path, None, f"{key}: "), context, tuple(answers), language,
                     f"{path}:{key}")


# --------------------------------------------------------------------------------- XNLI
def read_xnli(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[SentencePairExample]:
    path, policy = Path(path), ErrorPolicy.resolve(policy)
    header: list[str] | None = None
    with policy.scope(path):
        for lineno, line in _lines(path):
            if not line.strip():
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                if {"sentence1", "sentence2", "gold_label"} <= set(cols):
                    names = ("sentence1", "sentence2", "gold_label")
                elif {"premise", "hypo", "label"} <= set(cols):
                    names = ("premise", "hypo", "label")
                else:
                    raise DataError(path, lineno, "header must name sentence1/sentence2/gold_label (xnli.*.tsv) "
                                    f"or premise/hypo/label (XNLI-MT), got {cols[:6]}")
                index = [cols.index(n) for n in names]
                lang = cols.index("language") if "language" in cols else None
                continue
            try:
                if len(cols) != len(header):
                    raise DataError(path, lineno, f"expected {len(header)} TAB-separated fields, got {len(cols)}")
                a, b, label = (cols[i] for i in index)
                if not a.strip() or not b.strip():
                    raise DataError(path, lineno, "empty sentence")
                if label not in NLI_LABELS:
                    raise DataError(path, lineno, f"unknown label {label!r}; expected one of {sorted(NLI_LABELS)}")
                yield SentencePairExample(a, b, NLI_LABELS[label], cols[lang] if lang is not None else "en",
                                          f"{path}:{lineno}")
            except DataError as err:
                policy.handle(err)


# --------------------------------------------------------------------------------- tagging
def read_conll_ner(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[TaggingExample]:
    """A sentence with a bad line is dropped whole (one counted skip), never shortened."""
    path, policy = Path(path), ErrorPolicy.resolve(policy)
    words: list[str] = []
    tags: list[str] = []
    start, broken = 0, False
    with policy.scope(path):
        for lineno, line in _lines(path):
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if words and not broken:
                    yield TaggingExample(tuple(words), tuple(tags), f"{path}:{start}")
                words, tags, broken = [], [], False
                continue
            if not words and not broken:
                start = lineno
            if broken:
                continue
            tag = cols[-1] if len(cols) >= 2 else ""
            if len(cols) < 2 or (tag != "O" and not re.fullmatch(r"[BIES]-\S+", tag)):
                why = "expected a token and a tag" if len(cols) < 2 else f"tag {tag!r} is not O or B-/I-/E-/S-TYPE"
                policy.handle(DataError(path, lineno, f"{why}: {line!r}"))
                broken = True
                continue
            words.append(cols[0])
            tags.append(tag)
        if words and not broken:
            yield TaggingExample(tuple(words), tuple(tags), f"{path}:{start}")


def read_conllu_upos(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[TaggingExample]:
    path, policy = Path(path), ErrorPolicy.resolve(policy)
    for sent in read_conllu(path, policy):
        bad = [i for i, tag in enumerate(sent.upos) if tag not in UPOS_TAGS]
        if bad:
            line = sent.lines[bad[0]] if sent.lines else None
            policy.handle(DataError(path, line, f"UPOS {sent.upos[bad[0]]!r} is not one of the 17 UD tags"),
                          "bad UPOS")
            continue
        yield TaggingExample(sent.words, sent.upos, sent.source)


_HEADING = re.compile(r"\s*=( =)* .* =( =)*\s*")


def read_text_lines(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[TextExample]:
    path = Path(path)
    for lineno, line in _lines(path):
        if line.strip() and not _HEADING.fullmatch(line):
            yield TextExample(tuple(line.split()), f"{path}:{lineno}")
