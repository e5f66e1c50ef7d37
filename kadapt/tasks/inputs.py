"""Tokenisation helpers shared by the task heads (fast tokenizers, offset mappings)."""
from __future__ import annotations

from collections.abc import Sequence

from kadapt.core.errors import DataError


def _where(source: str) -> str:
    return source or "<example>"


def word_first_tokens(words: Sequence[str], tokenizer, max_length: int, source: str = "") -> tuple[dict, list[int]]:
    """Tokenise words joined by single spaces; returns the encoding and each word's first token index
    (-1 for words lost to truncation). A bare ``Ġ``/``▁`` piece belongs to the word after it."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; offset mappings are required")
    if not words:
        raise DataError(_where(source), None, "empty sentence")
    text = " ".join(words)
    char_word = [-1] * len(text)
    pos = 0
    for w, word in enumerate(words):
        char_word[pos:pos + len(word)] = [w] * len(word)
        pos += len(word) + 1
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    first = [-1] * len(words)
    for t, ((s, e), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if special:
            continue
        w = next((char_word[c] for c in range(s, e) if char_word[c] >= 0), -1)
        if w < 0 and e < len(text) and char_word[e] >= 0 and (e == 0 or char_word[e - 1] < 0):
            w = char_word[e]
        if w >= 0 and first[w] < 0:
            first[w] = t
    return enc, first


def mask_token(tokenizer, source: str = "") -> tuple[str, int]:
    if tokenizer.mask_token is None:
        raise DataError(_where(source), None, f"{type(tokenizer).__name__} has no mask token")
    return tokenizer.mask_token, tokenizer.mask_token_id
