"""Relation and dependency encoding, batching and labels, on hand-built and trained tokenizers."""
from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertTokenizer, BertTokenizerFast, RobertaTokenizerFast

from kadapt.data.encoding import (
    DependencyStats,
    LabelVocab,
    collate,
    encode_dependency,
    encode_relation,
)
from kadapt.data.records import DependencyExample, RelationExample
from kadapt.core.errors import DataError
from kadapt.testing.tiny import train_tokenizer

# "The puppy barked loudly ." -- UD-style heads: The->puppy, puppy->barked, barked=root, ...
WORDS = ("The", "puppy", "barked", "loudly", ".")
HEADS = (2, 3, 0, 3, 3)
# Both hand-built tokenizers split it as  CLS The pup|py bark|ed loud|ly . SEP, so the first
# sub-tokens sit at 1, 2, 4, 6, 8 and the targets are: The->2, puppy->4, barked->0 (CLS), loudly->4,
# .->4; every other position is -100.
EXPECTED_HEADS = [-100, 2, 4, -100, 0, -100, 4, -100, 4, -100]

CORPUS = ["Allan Peiper was born in Alexandra , Victoria .",
          "Bill Gates founded Microsoft in Albuquerque .",
          "The puppy barked loudly at the unbelievable story ."] * 4


@pytest.fixture(scope="module")
def hand_bert() -> BertTokenizerFast:
    """WordPiece with a hand-written vocabulary (no training, so splits are fixed by construction)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "@", "#", ".", "the", "pup", "##py",
             "bark", "##ed", "loud", "##ly"]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


@pytest.fixture(scope="module")
def hand_roberta() -> RobertaTokenizerFast:
    """Byte-level BPE with hand-written merges: "The", "Ġpup"+"py", "Ġbark"+"ed", "Ġloud"+"ly", "Ġ."."""
    merges = [("T", "h"), ("Th", "e"), ("Ġ", "p"), ("Ġp", "u"), ("Ġpu", "p"), ("p", "y"),
              ("Ġ", "b"), ("Ġb", "a"), ("Ġba", "r"), ("Ġbar", "k"), ("e", "d"), ("Ġ", "l"),
              ("Ġl", "o"), ("Ġlo", "u"), ("Ġlou", "d"), ("l", "y"), ("Ġ", ".")]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = specials + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["".join(m) for m in merges]
    tok = Tokenizer(models.BPE({w: i for i, w in enumerate(vocab)}, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return RobertaTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module", params=["bert", "roberta", "xlm-roberta"])
def trained(request):
    return train_tokenizer(request.param, CORPUS, vocab_size=120)


def tokens(tokenizer, ids) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


# --------------------------------------------------------------------------- relations

REL = RelationExample("The puppy barked loudly .", (0, 9), (17, 23), "P1", "rel.jsonl:7")


def test_relation_exact_tokens_bert(hand_bert):
    f = encode_relation(REL, hand_bert, max_length=64)
    assert tokens(hand_bert, f["input_ids"]) == ["[CLS]", "@", "the", "pup", "##py", "@", "bark",
                                                 "##ed", "#", "loud", "##ly", "#", ".", "[SEP]"]
    assert (f["subj_pos"], f["obj_pos"]) == (1, 8)
    assert (f["subj_end"], f["obj_end"]) == (5, 11)  # closing markers
    assert set(f) == {"input_ids", "subj_pos", "obj_pos", "subj_end", "obj_end"}


def test_relation_exact_tokens_roberta(hand_roberta):
    f = encode_relation(REL, hand_roberta, max_length=64)
    toks = tokens(hand_roberta, f["input_ids"])
    # marked text: "@ The puppy @ barked # loudly # ." -> " @" is a bare "Ġ" plus "@"
    assert toks == ["<s>", "@", "Ġ", "The", "Ġpup", "py", "Ġ", "@", "Ġbark", "ed", "Ġ", "#",
                    "Ġloud", "ly", "Ġ", "#", "Ġ.", "</s>"]
    assert (f["subj_pos"], f["obj_pos"]) == (1, 11)
    assert (f["subj_end"], f["obj_end"]) == (7, 15)


def test_relation_markers_decode_on_trained_tokenizers(trained):
    exs = [REL,
           RelationExample("Bill Gates founded Microsoft .", (19, 28), (0, 10), "P112"),  # object first
           RelationExample("Allan Peiper was born in Alexandra", (0, 12), (25, 34), "P19")]  # ends text
    for ex in exs:
        f = encode_relation(ex, trained, max_length=64)
        ids = f["input_ids"]
        assert trained.decode([ids[f["subj_pos"]]]).strip() == "@"
        assert trained.decode([ids[f["obj_pos"]]]).strip() == "#"
        assert ids[0] == trained.cls_token_id and ids[-1] == trained.sep_token_id
        decoded = [trained.decode([i]).strip() for i in ids]
        assert decoded.count("@") == 2 and decoded.count("#") == 2


def test_relation_labels_added_from_vocab(hand_bert):
    vocab = LabelVocab(["P0", "P1"], frozen=True)
    assert encode_relation(REL, hand_bert, 64, labels=vocab)["labels"] == 1
    with pytest.raises(DataError, match=r"rel\.jsonl:7: unknown label 'P1' \(known: 1 labels\)"):
        encode_relation(REL, hand_bert, 64, labels=LabelVocab.from_list(["P0"]))


def test_relation_entity_cut_off_by_truncation(hand_bert):
    # 14 tokens in all; the object's closing "#" is token 11 -> max_length 13 keeps it (with the
    # final [SEP]), 12 does not
    assert encode_relation(REL, hand_bert, max_length=13)["obj_pos"] == 8
    with pytest.raises(DataError, match=r"^rel\.jsonl:7: entity cut off by truncation \(max_length=12\)$"):
        encode_relation(REL, hand_bert, max_length=12)


@pytest.mark.parametrize("ex, message", [
    (RelationExample("", (0, 0), (0, 0), "P1", "f:1"), "f:1: empty text"),
    (RelationExample("a b", (0, 1), (2, 9), "P1", "f:2"), r"f:2: object span \[2, 9\) is empty or outside"),
    (RelationExample("a b", (0, 0), (2, 3), "P1", "f:3"), r"f:3: subject span \[0, 0\)"),
    (RelationExample("a b c", (0, 3), (2, 5), "P1", "f:4"), "f:4: subject .* overlap"),
])
def test_relation_bad_examples(hand_bert, ex, message):
    with pytest.raises(DataError, match=message):
        encode_relation(ex, hand_bert, 64)


def test_slow_tokenizer_rejected(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"]))
    with pytest.raises(TypeError, match="not a fast tokenizer"):
        encode_relation(RelationExample("a b", (0, 1), (2, 3), "P"), BertTokenizer(str(vocab)), 8)


# --------------------------------------------------------------------------- dependencies


def test_dependency_hand_worked_bert(hand_bert):
    f = encode_dependency(DependencyExample(WORDS, HEADS, "ud:1"), hand_bert, 64)
    assert tokens(hand_bert, f["input_ids"]) == ["[CLS]", "the", "pup", "##py", "bark", "##ed",
                                                 "loud", "##ly", ".", "[SEP]"]
    assert f["head_positions"] == EXPECTED_HEADS


def test_dependency_hand_worked_roberta(hand_roberta):
    f = encode_dependency(DependencyExample(WORDS, HEADS, "ud:1"), hand_roberta, 64)
    assert tokens(hand_roberta, f["input_ids"]) == ["<s>", "The", "Ġpup", "py", "Ġbark", "ed",
                                                    "Ġloud", "ly", "Ġ.", "</s>"]
    assert f["head_positions"] == EXPECTED_HEADS


def test_dependency_bare_space_piece_starts_its_word(hand_roberta):
    # "puppy The ." -> <s> p u p py Ġ The Ġ. </s>; "The" starts at the bare "Ġ" (position 5)
    f = encode_dependency(DependencyExample(("puppy", "The", "."), (0, 1, 1)), hand_roberta, 64)
    assert tokens(hand_roberta, f["input_ids"]) == ["<s>", "p", "u", "p", "py", "Ġ", "The", "Ġ.", "</s>"]
    assert f["head_positions"] == [-100, 0, -100, -100, -100, 1, -100, 1, -100]


def test_dependency_truncation_is_counted(hand_bert):
    stats = DependencyStats()
    # max_length 6 keeps [CLS] the pup ##py bark [SEP]: "loudly" and "." lose their position;
    # all kept words have their heads kept.
    f = encode_dependency(DependencyExample(WORDS, HEADS), hand_bert, 6, stats)
    assert f["head_positions"] == [-100, 2, 4, -100, 0, -100]
    # max_length 4 keeps [CLS] the pup [SEP]: puppy's head "barked" is cut off -> -100
    f = encode_dependency(DependencyExample(WORDS, HEADS), hand_bert, 4, stats)
    assert f["head_positions"] == [-100, 2, -100, -100]
    assert (stats.sentences, stats.words, stats.words_dropped, stats.heads_dropped) == (2, 10, 5, 1)
    assert "5 words without a position, 1 heads cut off" in str(stats)


@pytest.mark.parametrize("ex, message", [
    (DependencyExample((), (), "ud.conllu:40"), r"^ud\.conllu:40: empty sentence$"),
    (DependencyExample(("a", "b"), (0,), "ud:2"), "ud:2: 2 words but 1 heads"),
    (DependencyExample(("a", "b"), (0, 5), "ud:3"), "ud:3: word 2 has invalid head 5"),
])
def test_dependency_bad_examples(hand_bert, ex, message):
    with pytest.raises(DataError, match=message):
        encode_dependency(ex, hand_bert, 64)


def test_dependency_trained_tokenizers_targets_are_first_subtokens(trained):
    words = ("Allan", "Peiper", "was", "born", "in", "Alexandra", ".")
    heads = (2, 4, 4, 0, 6, 4, 4)
    f = encode_dependency(DependencyExample(words, heads), trained, 64)
    targets = [(t, h) for t, h in enumerate(f["head_positions"]) if h != -100]
    assert len(targets) == len(words) and len(f["head_positions"]) == len(f["input_ids"])
    first = [t for t, _ in targets]
    assert first == sorted(first) and first[0] == 1
    assert [h for _, h in targets] == [first[h - 1] if h else 0 for h in heads]


# --------------------------------------------------------------------------- collate, labels


def test_collate_pads_and_stacks():
    batch = collate([{"input_ids": [5, 6, 7], "head_positions": [-100, 0, 1], "subj_pos": 1,
                      "labels": 2},
                     {"input_ids": [5], "head_positions": [-100], "subj_pos": 0, "labels": 0}],
                    pad_token_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["head_positions"].tolist() == [[-100, 0, 1], [-100, -100, -100]]
    assert batch["subj_pos"].tolist() == [1, 0] and batch["labels"].tolist() == [2, 0]
    assert all(t.dtype == torch.long for t in batch.values())
    floats = collate([{"input_ids": [1], "labels": [0.0, 1.0]}, {"input_ids": [1, 2], "labels": [1.0, 1.0]}], 0)
    assert floats["labels"].dtype == torch.float
    with pytest.raises(ValueError, match="keys"):
        collate([{"input_ids": [1]}, {"input_ids": [1], "labels": 0}], 0)


def test_collate_real_features(hand_roberta):
    feats = [encode_relation(REL, hand_roberta, 64),
             encode_relation(RelationExample("a b", (0, 1), (2, 3), "P2"), hand_roberta, 64)]
    batch = collate(feats, hand_roberta.pad_token_id)
    assert batch["input_ids"].shape == (2, len(feats[0]["input_ids"]))
    assert batch["input_ids"][1, len(feats[1]["input_ids"]):].eq(hand_roberta.pad_token_id).all()
    assert batch["obj_pos"].tolist() == [feats[0]["obj_pos"], feats[1]["obj_pos"]]


def test_label_vocab_roundtrip_and_errors():
    vocab = LabelVocab()
    assert [vocab.id(x) for x in ["P19", "P20", "P19"]] == [0, 1, 0]
    loaded = LabelVocab.from_list(json.loads(json.dumps(vocab.to_list())))
    assert loaded.to_list() == ["P19", "P20"] and loaded.frozen and len(loaded) == 2
    assert loaded.id("P20") == 1 and loaded.label(0) == "P19" and "P19" in loaded
    with pytest.raises(DataError, match=r"^train\.json:#3: unknown label 'P99' \(known: 2 labels\)$"):
        loaded.id("P99", "train.json:#3")
    with pytest.raises(ValueError, match="frozen"):
        loaded.add("P99")
    with pytest.raises(ValueError, match="duplicates"):
        LabelVocab.from_list(["a", "a"])
    with pytest.raises(IndexError):
        loaded.label(2)
