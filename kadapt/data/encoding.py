"""Turn typed records into model features with a Hugging Face *fast* tokenizer, and batch them.

- :func:`encode_relation` -- K-Adapter relation input: `` @ `` around the subject, `` # `` around the
  object; ``subj_pos`` / ``obj_pos`` index the opening marker tokens (found through offset mappings).
- :func:`encode_dependency` -- head prediction input: ``head_positions[t]`` for the first sub-token
  ``t`` of each word is the token index of its head word's first sub-token (root -> 0, the
  CLS/``<s>`` position); every other position is ``-100`` (ignored by cross-entropy).
- :func:`collate` -- dynamic padding to the longest sequence of the batch.
- :class:`LabelVocab` -- label string <-> id, JSON-serialisable.

Words and marked texts are tokenized as plain text (words joined by single spaces) and mapped back by
character offsets, so one code path serves BERT WordPiece, RoBERTa byte-level BPE and XLM-R
sentencepiece tokenizers without ``is_split_into_words`` / ``add_prefix_space`` special cases.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from kadapt.data.mentions import EntityLinking, Mention, token_entities
from kadapt.data.records import DependencyExample, RelationExample
from kadapt.core.errors import DataError

__all__ = ["encode_relation", "encode_dependency", "DependencyStats", "collate", "LabelVocab",
           "IGNORE_INDEX", "SUBJ_MARKER", "OBJ_MARKER"]

IGNORE_INDEX = -100
SUBJ_MARKER = "@"
OBJ_MARKER = "#"

# Padding value of list-valued features in :func:`collate`; other lists are padded with IGNORE_INDEX.
_LIST_PAD = {"attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1}


def _where(source: str) -> str:
    return source or "<example>"


def _check_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; offset mappings are "
                        "required (load it with use_fast=True)")


def _tokenize(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> Any:
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    return tokenizer(text, truncation=True, max_length=max_length, add_special_tokens=True,
                     return_offsets_mapping=True, return_special_tokens_mask=True)


# --------------------------------------------------------------------------- relations


def _insert_markers(text: str, subj: tuple[int, int],
                    obj: tuple[int, int]) -> tuple[str, list[int]]:
    """Insert the markers, each separated from its neighbours by exactly one space.

    Returns the marked text and the character positions of the subject's opening and closing
    marker and the object's opening and closing marker, in that order.
    """
    # (char position, opens?, slot, marker); at one position closing markers come first.
    events = sorted([(subj[0], 1, 0, SUBJ_MARKER), (subj[1], 0, 1, SUBJ_MARKER),
                     (obj[0], 1, 2, OBJ_MARKER), (obj[1], 0, 3, OBJ_MARKER)])
    out, prev, positions = "", 0, [0, 0, 0, 0]
    for pos, _, slot, marker in events:
        out = _append(out, text[prev:pos], after_marker=bool(out)).rstrip()
        out += " " if out else ""
        positions[slot] = len(out)
        out += marker
        prev = pos
    return _append(out, text[prev:], after_marker=True), positions


def _append(out: str, segment: str, after_marker: bool) -> str:
    """Append ``segment``; right after a marker, with exactly one separating space."""
    if not after_marker:
        return out + segment
    segment = segment.lstrip()
    return f"{out} {segment}" if segment else out


def _check_relation(ex: RelationExample) -> None:
    n = len(ex.text)
    if not ex.text.strip():
        raise DataError(_where(ex.source), None, "empty text")
    for name, (start, end) in (("subject", ex.subj_span), ("object", ex.obj_span)):
        if not 0 <= start < end <= n:
            raise DataError(_where(ex.source), None,
                            f"{name} span [{start}, {end}) is empty or outside the text (length {n})")
    if ex.subj_span[0] < ex.obj_span[1] and ex.obj_span[0] < ex.subj_span[1]:
        raise DataError(_where(ex.source), None,
                        f"subject {ex.subj_span} and object {ex.obj_span} overlap")


def encode_relation(ex: RelationExample, tokenizer: PreTrainedTokenizerBase, max_length: int,
                    labels: LabelVocab | None = None, linking: EntityLinking | None = None) -> dict[str, Any]:
    """Encode one relation example: ``{"input_ids", "subj_pos", "obj_pos", "subj_end", "obj_end"}``
    (+ ``"labels"``).

    ``subj_pos`` / ``obj_pos`` are the indices of the first ``@`` / ``#`` marker token and
    ``subj_end`` / ``obj_end`` those of the closing markers (the entity lies strictly between).  If
    truncation to ``max_length`` cuts off any of the four markers, a :class:`DataError` naming
    ``ex.source`` is raised ("entity cut off by truncation").  With ``labels`` given, its id for
    ``ex.label`` is added under ``"labels"`` (unknown labels of a frozen vocab raise DataError).
    With ``linking`` given, ``"token_entities"`` holds the KG row of the subject / object tokens (from
    ``ex.subj_id`` / ``ex.obj_id``) and of the linker's other mentions in the marked text, -1 elsewhere.
    """
    _check_fast(tokenizer)
    _check_relation(ex)
    marked, char_pos = _insert_markers(ex.text, ex.subj_span, ex.obj_span)
    enc = _tokenize(tokenizer, marked, max_length)
    token_pos, kept_end = [-1, -1, -1, -1], 0
    for t, ((s, e), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special or s >= e:
            continue
        kept_end = max(kept_end, e)
        for k, p in enumerate(char_pos):
            if s <= p < e:
                token_pos[k] = t  # the last token covering the marker (skips a leading bare "▁")
    for k, p in enumerate(char_pos):
        if token_pos[k] < 0 and p >= kept_end:
            raise DataError(_where(ex.source), None,
                            f"entity cut off by truncation (max_length={max_length})")
        if token_pos[k] < 0:
            raise ValueError(f"{type(tokenizer).__name__} produces no token for the marker "
                             f"{marked[p]!r}; it cannot encode K-Adapter relation inputs")
    features: dict[str, Any] = {"input_ids": list(enc["input_ids"]),
                                "subj_pos": token_pos[0], "obj_pos": token_pos[2],
                                "subj_end": token_pos[1], "obj_end": token_pos[3]}
    if labels is not None:
        features["labels"] = labels.id(ex.label, ex.source)
    if linking is not None:
        features["token_entities"] = _relation_entities(ex, marked, char_pos, enc, token_pos, linking)
    return features


def _inner_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without surrounding spaces."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _relation_entities(ex: RelationExample, marked: str, char_pos: list[int], enc: Any, token_pos: list[int],
                       linking: EntityLinking) -> list[int]:
    """``token_entities`` of a marked relation input; the instance counts as linked for subject and
    object when a token strictly between each pair of markers got an entity."""
    gold = [Mention(*_inner_span(marked, char_pos[0] + 1, char_pos[1]), ex.subj_id),
            Mention(*_inner_span(marked, char_pos[2] + 1, char_pos[3]), ex.obj_id)]
    rows = token_entities(enc["offset_mapping"], enc["special_tokens_mask"], len(marked),
                          linking.mentions(marked, gold), linking.rows, linking.stats)
    linking.stats.instance([any(r >= 0 for r in rows[token_pos[a] + 1:token_pos[b]]) for a, b in ((0, 1), (2, 3))])
    return rows


# --------------------------------------------------------------------------- dependencies


@dataclass
class DependencyStats:
    """Counts of what truncation (or an unrepresentable word) removed from head-prediction targets.

    ``words_dropped``: words with no sub-token left (cut off, or the tokenizer produced nothing for
    them) -- they get no target.  ``heads_dropped``: words that kept a position but whose head word did
    not -- their target is ``-100``.
    """

    sentences: int = 0
    words: int = 0
    words_dropped: int = 0
    heads_dropped: int = 0

    def __str__(self) -> str:
        return (f"{self.sentences} sentences, {self.words} words: {self.words_dropped} words without "
                f"a position, {self.heads_dropped} heads cut off (targets set to {IGNORE_INDEX})")

    def log(self, log: logging.Logger, level: int = logging.WARNING) -> None:
        """Log the counts (at ``level`` if anything was dropped, else at INFO)."""
        lost = self.words_dropped or self.heads_dropped
        log.log(level if lost else logging.INFO, "dependency encoding: %s", self)


def _check_dependency(ex: DependencyExample) -> None:
    n = len(ex.words)
    if n == 0:
        raise DataError(_where(ex.source), None, "empty sentence")
    if len(ex.heads) != n:
        raise DataError(_where(ex.source), None, f"{n} words but {len(ex.heads)} heads")
    for i, (word, head) in enumerate(zip(ex.words, ex.heads), start=1):
        if not word:
            raise DataError(_where(ex.source), None, f"word {i} is empty")
        if not 0 <= head <= n or head == i:
            raise DataError(_where(ex.source), None, f"word {i} has invalid head {head}")


def encode_dependency(ex: DependencyExample, tokenizer: PreTrainedTokenizerBase, max_length: int,
                      stats: DependencyStats | None = None) -> dict[str, Any]:
    """Encode one sentence for head prediction: ``{"input_ids", "head_positions"}``.

    A token belongs to the word whose characters it overlaps; a whitespace-only piece (a bare ``Ġ``
    or ``▁``) belongs to the word that starts right after it, as with ``is_split_into_words``.  A
    word's first token carries its target.  Words and heads lost to truncation are
    counted in ``stats`` (see :class:`DependencyStats`), not raised.  An empty sentence or
    inconsistent heads raise :class:`DataError` naming ``ex.source``.
    """
    _check_fast(tokenizer)
    _check_dependency(ex)
    text = " ".join(ex.words)
    char_word = [-1] * len(text)
    pos = 0
    for w, word in enumerate(ex.words):
        char_word[pos:pos + len(word)] = [w] * len(word)
        pos += len(word) + 1
    enc = _tokenize(tokenizer, text, max_length)
    if not enc["special_tokens_mask"] or not enc["special_tokens_mask"][0]:
        raise ValueError(f"{type(tokenizer).__name__} adds no leading special token; the root "
                         "target (position 0) needs one")
    first = [-1] * len(ex.words)
    for t, ((s, e), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special:
            continue
        w = next((char_word[c] for c in range(s, e) if char_word[c] >= 0), -1)
        if w < 0 and e < len(text) and char_word[e] >= 0 and (e == 0 or char_word[e - 1] < 0):
            w = char_word[e]  # a bare "Ġ" / "▁" piece right before a word starts that word
        if w >= 0 and first[w] < 0:
            first[w] = t
    head_positions = [IGNORE_INDEX] * len(enc["input_ids"])
    heads_dropped = 0
    for w, head in enumerate(ex.heads):
        if first[w] < 0:
            continue
        if head == 0:
            head_positions[first[w]] = 0
        elif first[head - 1] >= 0:
            head_positions[first[w]] = first[head - 1]
        else:
            heads_dropped += 1
    if stats is not None:
        stats.sentences += 1
        stats.words += len(ex.words)
        stats.words_dropped += first.count(-1)
        stats.heads_dropped += heads_dropped
    return {"input_ids": list(enc["input_ids"]), "head_positions": head_positions}


# --------------------------------------------------------------------------- batching


class PaddingCollator:
    """:func:`collate` as a data collator (``transformers.Trainer(data_collator=...)``, ``DataLoader``):
    built from a tokenizer (its ``pad_token_id``) or the pad id itself."""

    def __init__(self, tokenizer_or_pad_id):
        pad = tokenizer_or_pad_id if isinstance(tokenizer_or_pad_id, int) else tokenizer_or_pad_id.pad_token_id
        if pad is None:
            raise ValueError("PaddingCollator: the tokenizer has no pad token")
        self.pad_token_id = int(pad)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return collate(features, self.pad_token_id)


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence (right padding) and stack it into tensors.

    ``input_ids`` are padded with ``pad_token_id`` and an ``attention_mask`` is built (unless given);
    other list-valued features are padded with 0 (``attention_mask``, ``token_type_ids``), 1
    (``special_tokens_mask``) or ``-100`` (``head_positions``, token labels, anything else).
    Lists of lists (multiple-choice rows, QA windows) become (batch, rows, seq) tensors padded the
    same way in both inner dimensions; without an ``attention_mask`` one is built from the row lengths.
    Scalar features (``subj_pos``, ``obj_pos``, ``labels``) are stacked: ints as LongTensor, floats
    as FloatTensor.  All features must have the same keys.
    """
    if not features:
        raise ValueError("collate needs at least one feature dict")
    keys = list(features[0])
    for i, f in enumerate(features):
        if set(f) != set(keys):
            raise ValueError(f"feature {i} has keys {sorted(f)}, feature 0 has {sorted(keys)}")
    if "input_ids" not in keys:
        raise ValueError("features need 'input_ids'")
    batch: dict[str, torch.Tensor] = {}
    nested = bool(features[0]["input_ids"]) and isinstance(features[0]["input_ids"][0], (list, tuple))
    if nested and "attention_mask" not in keys:  # grouped inputs (few-shot pairs): mask from row lengths
        batch["attention_mask"] = _pad_nested([[[1] * len(row) for row in f["input_ids"]] for f in features], 0)
    width = 0 if nested else max(len(f["input_ids"]) for f in features)
    if not nested and "attention_mask" not in keys:
        batch["attention_mask"] = torch.tensor(
            [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features],
            dtype=torch.long)
    for key in keys:
        values = [f[key] for f in features]
        if isinstance(values[0], (list, tuple)) and values[0] and isinstance(values[0][0], (list, tuple)):
            pad = pad_token_id if key == "input_ids" else _LIST_PAD.get(key, IGNORE_INDEX)
            batch[key] = _pad_nested(values, pad)
        elif isinstance(values[0], (list, tuple)):
            pad = pad_token_id if key == "input_ids" else _LIST_PAD.get(key, IGNORE_INDEX)
            longest = max(len(v) for v in values)
            rows = [list(v) + [pad] * (longest - len(v)) for v in values]
            batch[key] = torch.tensor(rows, dtype=_dtype(v for row in rows for v in row))
        else:
            batch[key] = torch.tensor(values, dtype=_dtype(values))
    return batch


def _pad_nested(values: Sequence[Sequence[Sequence[Any]]], pad: Any) -> torch.Tensor:
    """(batch, rows, seq) from lists of rows (choices, windows, answers): both inner dims padded with
    ``pad``; missing rows are all ``pad`` (an all-zero attention mask for padded windows)."""
    n_rows = max(len(v) for v in values)
    width = max(len(row) for v in values for row in v)
    out = [[list(row) + [pad] * (width - len(row)) for row in v] + [[pad] * width] * (n_rows - len(v))
           for v in values]
    return torch.tensor(out, dtype=_dtype(x for v in out for row in v for x in row))


def _dtype(values: Iterable[Any]) -> torch.dtype:
    return torch.float if any(isinstance(v, float) for v in values) else torch.long


# --------------------------------------------------------------------------- labels


class LabelVocab:
    """A label string <-> integer id mapping; ids follow insertion order.

    While not frozen, :meth:`id` adds unseen labels; once frozen (``freeze()``, or any vocab built
    by :meth:`from_list`), an unseen label raises :class:`DataError`.
    """

    def __init__(self, labels: Iterable[str] = (), *, frozen: bool = False):
        self._labels: list[str] = []
        self._ids: dict[str, int] = {}
        self.frozen = False
        for label in labels:
            self.add(label)
        self.frozen = frozen

    def add(self, label: str) -> int:
        """Id of ``label``, adding it if new (not allowed once frozen)."""
        if label in self._ids:
            return self._ids[label]
        if self.frozen:
            raise ValueError(f"cannot add label {label!r}: vocabulary is frozen")
        if not isinstance(label, str) or not label:
            raise ValueError(f"labels must be non-empty strings, got {label!r}")
        self._ids[label] = len(self._labels)
        self._labels.append(label)
        return self._ids[label]

    def id(self, label: str, source: str = "") -> int:
        """Id of ``label``; an unseen label is added, or -- if frozen -- a DataError at ``source``."""
        if label in self._ids:
            return self._ids[label]
        if self.frozen:
            raise DataError(_where(source), None,
                            f"unknown label {label!r} (known: {len(self._labels)} labels)")
        return self.add(label)

    def label(self, index: int) -> str:
        """Label string of id ``index``."""
        if not 0 <= index < len(self._labels):
            raise IndexError(f"label id {index} outside 0..{len(self._labels) - 1}")
        return self._labels[index]

    def freeze(self) -> LabelVocab:
        """Stop accepting new labels; returns ``self``."""
        self.frozen = True
        return self

    def to_list(self) -> list[str]:
        """Labels in id order (JSON-serialisable)."""
        return list(self._labels)

    @classmethod
    def from_list(cls, labels: Sequence[str]) -> LabelVocab:
        """A frozen vocab from :meth:`to_list` output; duplicate or non-string entries are errors."""
        if len(set(labels)) != len(labels):
            raise ValueError("label list has duplicates")
        return cls(labels, frozen=True)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __repr__(self) -> str:
        return f"LabelVocab({len(self)} labels, frozen={self.frozen})"
