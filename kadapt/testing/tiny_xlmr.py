"""A tiny XLM-R-shaped backbone with a multilingual tokenizer built on the fly (tests, small benchmarks).

XLM-R's sentencepiece model cannot be downloaded everywhere; real users load ``xlm-roberta-base`` by
name. For tests this builds a sentencepiece-like Unigram tokenizer (NFKC, Metaspace ``▁``, the
specials ``<s> <pad> </s> <unk> <mask>`` at XLM-R's ids 0-4) from counted pieces instead of the
``tokenizers`` Unigram trainer, whose output differs between processes (hash-order ties; measured:
three processes, three different vocabularies). Here the vocabulary and scores are a pure function
of the texts: specials, every character seen, then whole words and 2-4 character pieces by frequency
(ties in code-point order), scored by log frequency. Scripts without spaces (zh, ja) are covered by
their characters and frequent character n-grams.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_ALWAYS = list("@#.,;:!?'\"()-[]▁")


def multilingual_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> XLMRobertaTokenizerFast:
    """A deterministic XLM-R-style Unigram tokenizer over ``texts`` (at most ``vocab_size`` entries)."""
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    words: Counter[str] = Counter()
    for text in texts:
        if text.strip():
            words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    if not words:
        raise ValueError("multilingual_tokenizer needs at least one non-blank text")
    chars: Counter[str] = Counter()
    pieces: Counter[str] = Counter()
    for word, n in words.items():
        for c in word:
            chars[c] += n
        for size in (2, 3, 4):
            for start in range(len(word) - size + 1):
                pieces[word[start:start + size]] += n
    for c in _ALWAYS:
        chars.setdefault(c, 1)
    total = sum(chars.values())

    def ranked(counter: Counter[str]) -> list[tuple[str, int]]:
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))

    vocab: list[tuple[str, float]] = [(s, 0.0) for s in SPECIALS]
    vocab += [(c, math.log(n / total) - 4.0) for c, n in sorted(chars.items())]
    taken = {p for p, _ in vocab}
    longer = Counter({w: n for w, n in words.items() if len(w) > 1})
    for piece, n in ranked(longer + Counter({p: n for p, n in pieces.items() if p not in longer})):
        if len(vocab) >= vocab_size:
            break
        if piece not in taken:
            vocab.append((piece, math.log(n / total)))
            taken.add(piece)
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def build_tiny_xlmr(out_dir: str | Path, texts: Iterable[str], *, num_layers: int = 2, hidden_size: int = 64,
                    num_heads: int = 4, intermediate_size: int = 128, vocab_size: int = 4000,
                    max_position_embeddings: int = 130, seed: int = 0) -> Path:
    """Save a seeded random ``xlm-roberta`` model + the tokenizer above to ``out_dir`` (config.json, weights)."""
    tokenizer = multilingual_tokenizer(texts, vocab_size)
    tokenizer.model_max_length = max_position_embeddings - 2
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                              num_attention_heads=num_heads, intermediate_size=intermediate_size,
                              max_position_embeddings=max_position_embeddings, type_vocab_size=1,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaModel(config, add_pooling_layer=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
