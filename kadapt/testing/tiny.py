"""Small, real Hugging Face backbones built locally (no downloads) for tests and the quickstart demo.

``train_tokenizer`` trains a fast tokenizer of the right family with the ``tokenizers`` library
(BERT WordPiece, RoBERTa byte-level BPE, XLM-R Unigram with Metaspace, i.e. sentencepiece-like);
``build_tiny_backbone`` adds a seeded, randomly initialised model of the matching class and saves
everything with ``save_pretrained`` so ``AutoModel`` / ``AutoTokenizer.from_pretrained(out_dir)`` load it.
``roberta_large_config`` gives the real RoBERTa-large sizes for meta-device (no-memory) tests.
"""
from __future__ import annotations

from collections import Counter

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    BertTokenizerFast,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
    RobertaTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaModel,
    XLMRobertaTokenizerFast,
)

__all__ = ["ModelType", "train_tokenizer", "build_tiny_backbone", "roberta_large_config"]

ModelType = Literal["bert", "roberta", "xlm-roberta"]

# Characters every tiny vocabulary must contain whatever the training texts: the K-Adapter entity
# markers and common punctuation, so they never become the unknown token.
_ALPHABET = list("@#.,;:!?'\"()-[]")
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# RoBERTa and XLM-R order: <s>=0, <pad>=1, </s>=2, <unk>=3 (the real models' ids); <mask> follows.
_ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _bert_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer whose vocabulary is a pure function of ``texts`` (byte-identical across
    processes): specials, every character and its ``##`` continuation, then whole words by frequency
    (ties alphabetical). The Rust WordPiece trainer breaks ties in hash order, so it is not used here.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word} | set(_ALPHABET))
    vocab = list(_BERT_SPECIALS) + chars + [f"##{c}" for c in chars]
    def by_count(counter: Counter[str]) -> list[str]:
        return [t for t, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]

    words = [w for w in by_count(counts) if len(w) > 1]
    room = max(0, vocab_size - len(vocab))
    vocab += words[:room]
    # pieces of 2-4 characters (word-initial and ##-continuations) so unseen words stay short
    pieces: Counter[str] = Counter()
    for word, n in counts.items():
        for size in (2, 3, 4):
            for start in range(0, max(0, len(word) - size + 1)):
                pieces[("##" if start else "") + word[start:start + size]] += n
    taken = set(vocab)
    vocab += [p for p in by_count(pieces) if p not in taken][:max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     continuing_subword_prefix="##"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, unk_token="[UNK]",
                             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                             mask_token="[MASK]")


def _roberta_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=_ROBERTA_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.RobertaProcessing(
        sep=("</s>", tok.token_to_id("</s>")), cls=("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>")


def _xlmr_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=_ROBERTA_SPECIALS,
                                      unk_token="<unk>", initial_alphabet=_ALPHABET,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>")


_TOKENIZER_BUILDERS = {"bert": _bert_tokenizer, "roberta": _roberta_tokenizer,
                       "xlm-roberta": _xlmr_tokenizer}


def train_tokenizer(model_type: ModelType, texts: Iterable[str],
                    vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Train a fast tokenizer of ``model_type``'s family on ``texts``.

    ``"bert"``: lower-casing WordPiece with ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4);
    ``"roberta"``: byte-level BPE with ``<s> <pad> </s> <unk> <mask>`` (ids 0-4, as in RoBERTa);
    ``"xlm-roberta"``: Unigram over Metaspace pieces (sentencepiece-like) with the same specials.
    ``vocab_size`` is an upper bound: a small corpus may yield fewer entries.
    """
    if model_type not in _TOKENIZER_BUILDERS:
        raise ValueError(f"model_type must be one of {sorted(_TOKENIZER_BUILDERS)}, got {model_type!r}")
    corpus = [t for t in texts if t.strip()]
    if not corpus:
        raise ValueError("train_tokenizer needs at least one non-blank text")
    return _TOKENIZER_BUILDERS[model_type](corpus, vocab_size)


_MODEL_CLASSES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel], type[PreTrainedModel]]] = {
    "bert": (BertConfig, BertModel, BertForMaskedLM),
    "roberta": (RobertaConfig, RobertaModel, RobertaForMaskedLM),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel, XLMRobertaForMaskedLM),
}


def build_tiny_backbone(out_dir: str | Path, model_type: ModelType, texts: Iterable[str],
                        num_layers: int = 4, hidden_size: int = 64, num_heads: int = 4,
                        intermediate_size: int = 128, vocab_size: int = 2000,
                        max_position_embeddings: int = 256, seed: int = 0,
                        with_mlm_head: bool = False) -> Path:
    """Train a tokenizer on ``texts``, build a seeded random model, save both to ``out_dir``.

    Writes ``config.json``, ``model.safetensors`` and the tokenizer files; returns ``out_dir``.
    The model's vocabulary is the trained tokenizer's actual size.  For RoBERTa/XLM-R, positions
    start after the padding index, so the longest usable sequence is ``max_position_embeddings - 2``
    (the tokenizer's ``model_max_length`` says so).  The global torch RNG state is left untouched.
    """
    if model_type not in _MODEL_CLASSES:
        raise ValueError(f"model_type must be one of {sorted(_MODEL_CLASSES)}, got {model_type!r}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    tokenizer = train_tokenizer(model_type, texts, vocab_size)
    config_cls, base_cls, mlm_cls = _MODEL_CLASSES[model_type]
    extra: dict[str, int] = {}
    if model_type == "bert":
        tokenizer.model_max_length = max_position_embeddings
    else:
        tokenizer.model_max_length = max_position_embeddings - 2
        extra = dict(type_vocab_size=1, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id)
    config = config_cls(vocab_size=len(tokenizer), hidden_size=hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=num_heads,
                        intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings,
                        pad_token_id=tokenizer.pad_token_id, **extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (mlm_cls if with_mlm_head else base_cls)(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def roberta_large_config() -> RobertaConfig:
    """The published ``roberta-large`` configuration (for building it on the meta device)."""
    return RobertaConfig(vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                         num_attention_heads=16, intermediate_size=4096, hidden_act="gelu",
                         hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                         max_position_embeddings=514, type_vocab_size=1, initializer_range=0.02,
                         layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
