"""Long-tail words in the knowledge-augmented memory bank (TRELM §3.4 "Input": "We identify important
entities and long-tail words throughout the corpus ... Embeddings of important entities and long-tail
words are then updated in the KMB"; the idea — notes for rare words — is Wu et al. 2020, "Taking Notes
on the Fly", which §3.2 extends).

What the paper leaves open is fixed here as:

* a **word** is a whole word of the tokenizer (its ``word_ids``): the objective's encoding gives every
  token the key of its word (:func:`word_key` of the lower-cased surface; ``-100`` at special tokens) in
  ``word_keys`` and the word's index in the sentence in ``word_ids``;
* a word is **long-tail** when its count over the corpus is at most ``long_tail_max_count``. The corpus
  is counted during the first epoch (every training sentence's words, masked ones included, each
  occurrence once): within the first epoch a word is long-tail while its running count is at most the
  threshold; from the second epoch on the counts are those of the whole corpus;
* a long-tail occurrence is **mixed** by eq. 7 with h = E_p (a word has no KG row) at its tokens, unless
  one of them is a masked target (MLM or CKA: its memory would reveal the answer) or lies in the
  sentence's entity span; its memory is updated by eq. 4–6 with the ±k window around the word. Words
  use a memory table of their own, so they never share slots with entities.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

IGNORE = -100


def word_key(surface: str) -> int:
    """Stable integer key of a word (a key space apart from the entities' ``entity_key``)."""
    return zlib.crc32(("word|" + " ".join(surface.lower().split())).encode()) & 0x7FFFFFFF


def word_features(enc, text: str) -> dict[str, list[int]]:
    """``word_ids`` / ``word_keys`` per token of a fast tokenizer's encoding (-100 at special tokens);
    a slow tokenizer has no word ids: every non-special token is then its own word."""
    offsets, special = enc["offset_mapping"], enc["special_tokens_mask"]
    try:
        words = enc.word_ids()
    except ValueError:  # slow tokenizer
        words = [None if sp else t for t, sp in enumerate(special)]
    spans: dict[int, list[int]] = {}
    for (start, end), sp, word in zip(offsets, special, words):
        if word is not None and not sp:
            span = spans.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    ids = [IGNORE if w is None or sp else w for w, sp in zip(words, special)]
    keys = [IGNORE if w == IGNORE else word_key(text[spans[w][0]:spans[w][1]]) for w in ids]
    return {"word_ids": ids, "word_keys": keys}


@dataclass
class WordSpans:
    """The word occurrences of a batch: row, token range [start, end), key."""

    rows: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    keys: torch.Tensor

    def __len__(self) -> int:
        return int(self.rows.numel())

    def select(self, keep: torch.Tensor) -> "WordSpans":
        return WordSpans(self.rows[keep], self.start[keep], self.end[keep], self.keys[keep])

    def token_mask(self, shape) -> torch.Tensor:
        """(B, S) long: index of the span covering each token, -1 elsewhere."""
        index = torch.full(shape, -1, dtype=torch.long, device=self.rows.device)
        for i, (row, start, end) in enumerate(zip(self.rows.tolist(), self.start.tolist(), self.end.tolist())):
            index[row, start:end] = i
        return index


def word_spans(word_ids: torch.Tensor, word_keys: torch.Tensor) -> WordSpans:
    """Every word occurrence (a run of tokens with the same word id) of a (B, S) batch."""
    rows, starts, ends, keys = [], [], [], []
    for row, (ids, kk) in enumerate(zip(word_ids.tolist(), word_keys.tolist())):
        t = 0
        while t < len(ids):
            if ids[t] == IGNORE:
                t += 1
                continue
            end = t + 1
            while end < len(ids) and ids[end] == ids[t]:
                end += 1
            rows.append(row), starts.append(t), ends.append(end), keys.append(kk[t])
            t = end
    device = word_ids.device
    return WordSpans(*(torch.tensor(v, dtype=torch.long, device=device) for v in (rows, starts, ends, keys)))


class WordCounts:
    """Exact corpus counts per word key (a dict; saved as two sorted tensors)."""

    def __init__(self):
        self.counts: dict[int, int] = {}

    def observe(self, keys: torch.Tensor) -> None:
        for key in keys.tolist():
            self.counts[key] = self.counts.get(key, 0) + 1

    def of(self, keys: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.counts.get(k, 0) for k in keys.tolist()], dtype=torch.long, device=keys.device)

    def tensors(self) -> dict[str, torch.Tensor]:
        keys = sorted(self.counts)
        return {"word_count_keys": torch.tensor(keys, dtype=torch.long),
                "word_counts": torch.tensor([self.counts[k] for k in keys], dtype=torch.long)}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "word_count_keys" in tensors:
            self.counts = dict(zip(tensors["word_count_keys"].tolist(), tensors["word_counts"].tolist()))


def mix_words(hidden: torch.Tensor, spans: WordSpans, local: torch.Tensor, glob: torch.Tensor,
              lam: float) -> torch.Tensor:
    """Eq. 7 at the tokens of ``spans``: (1-λ)·E_p + λ/2·(M_local + M_global); other tokens unchanged."""
    if not len(spans):
        return hidden
    index = spans.token_mask(hidden.shape[:2])
    memory = (local + glob).to(hidden.dtype)[index.clamp_min(0)]
    return torch.where((index >= 0)[..., None], (1 - lam) * hidden + lam / 2 * memory, hidden)


def span_means(hidden: torch.Tensor, spans: WordSpans) -> torch.Tensor:
    """(N, H): mean of ``hidden`` over each span's tokens (a word's pre-trained input embedding)."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
    inside = ((positions >= spans.start[:, None]) & (positions < spans.end[:, None])).to(hidden.dtype)
    return (hidden[spans.rows] * inside[..., None]).sum(1) / inside.sum(1, keepdim=True).clamp_min(1.0)
