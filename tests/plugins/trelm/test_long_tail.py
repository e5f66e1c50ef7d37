"""Long-tail words in TRELM's memory bank: word keys from the encoding, exact corpus counts (first epoch),
eq. 7 mixing at usable long-tail words only, eq. 4–6 updates after the pass, save/load, switch off."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.core.objective import build_objective
from kadapt.data.encoding import collate
from kadapt.data.records import RelationExample
from kadapt.plugins.trelm.long_tail import IGNORE, WordCounts, word_key, word_spans
from kadapt.plugins.trelm.memory_bank import window_mean

OBAMA = RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "r:1")
CURIE = RelationExample("Marie Curie worked in Paris .", (0, 11), (22, 27), "P937", "r:3")


def encoded(backbone, records, mlm_probability=0.0):
    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size,
                           {"inject_both_directions": False, "mlm_probability": mlm_probability})
    head.bind_backbone(backbone)
    return collate([head.encode(r, backbone.tokenizer, 32) for r in records], backbone.tokenizer.pad_token_id)


def long_tail_plugin(backbone, **config):
    plugin = build_plugin("trelm", {"neurons_per_layer": [2], "memory_slots": 64, "important_fraction": 1.0,
                                    "long_tail_max_count": 1, **config}, backbone.spec)
    return plugin.train()


def test_encoding_gives_every_token_its_word_key(backbone):
    text = OBAMA.text
    feats = encoded(backbone, [OBAMA])
    enc = backbone.tokenizer(text, truncation=True, max_length=32, return_offsets_mapping=True,
                             return_special_tokens_mask=True)
    words = enc.word_ids()
    for t, (word, special) in enumerate(zip(words, enc["special_tokens_mask"])):
        if special:
            assert int(feats["word_ids"][0, t]) == IGNORE and int(feats["word_keys"][0, t]) == IGNORE
            continue
        pieces = [i for i, w in enumerate(words) if w == word]
        surface = text[enc["offset_mapping"][pieces[0]][0]:enc["offset_mapping"][pieces[-1]][1]]
        assert int(feats["word_ids"][0, t]) == word
        assert int(feats["word_keys"][0, t]) == word_key(surface)
    assert word_key("Born") == word_key("born") != word_key("was")


def test_word_spans_are_runs_of_one_word_id():
    ids = torch.tensor([[IGNORE, 0, 0, 1, IGNORE, IGNORE], [IGNORE, 0, 1, 1, 2, IGNORE]])
    keys = torch.tensor([[IGNORE, 7, 7, 8, IGNORE, IGNORE], [IGNORE, 9, 7, 7, 5, IGNORE]])
    spans = word_spans(ids, keys)
    assert spans.rows.tolist() == [0, 0, 1, 1, 1]
    assert spans.start.tolist() == [1, 3, 1, 2, 4]
    assert spans.end.tolist() == [3, 4, 2, 4, 5]
    assert spans.keys.tolist() == [7, 8, 9, 7, 5]
    index = spans.token_mask((2, 6))
    assert index.tolist() == [[-1, 0, 0, 1, -1, -1], [-1, 2, 3, 3, 4, -1]]


def test_long_tail_words_are_mixed_and_others_are_not(backbone):
    """max count 1: words seen once in the corpus so far are long-tail; "in" and "." (twice) are not;
    the entity (subject) and the masked object keep their embedding."""
    plugin = long_tail_plugin(backbone)
    batch = encoded(backbone, [OBAMA, CURIE])
    embedded = backbone.embed(batch["input_ids"])
    slot = word_key("born")
    plugin.word_memory.local[slot % 64] = 1.0  # a memory for "born" from earlier sentences
    plugin.word_memory.seen[slot % 64] = True
    mixed, (spans, initial) = plugin._mix_long_tail(embedded, batch)
    lam = plugin.current_lambda
    counts = plugin.word_counts.counts
    assert counts[word_key("in")] == 2 and counts[word_key(".")] == 2 and counts[word_key("born")] == 1
    subject = plugin._subject_mask(batch, embedded.shape[1])
    target = batch["cka_labels"] != IGNORE
    expected_words = set()
    for row in range(2):
        for t in range(embedded.shape[1]):
            key = int(batch["word_keys"][row, t])
            long_tail = key != IGNORE and counts[key] == 1 and not subject[row, t] and not target[row, t]
            if not long_tail:
                torch.testing.assert_close(mixed[row, t], embedded[row, t])
                continue
            expected_words.add(key)
            local, glob = plugin.word_memory.lookup(torch.tensor([key]), embedded[row, t][None])
            torch.testing.assert_close(mixed[row, t], (1 - lam) * embedded[row, t] + lam / 2 * (local[0] + glob[0]))
    assert set(spans.keys.tolist()) == expected_words and word_key("born") in expected_words
    assert word_key("in") not in expected_words
    # "born" has a memory (local = 1, no global yet -> global falls back to local): not its embedding
    born = (batch["word_keys"] == word_key("born")).nonzero()[0].tolist()
    torch.testing.assert_close(mixed[born[0], born[1]], (1 - lam) * embedded[born[0], born[1]] + lam * torch.ones(
        backbone.spec.hidden_size))
    assert plugin.long_tail_stats["word_occurrences_mixed"] == len(spans)


def test_counts_cover_the_first_epoch_only(backbone):
    plugin = long_tail_plugin(backbone)
    batch = encoded(backbone, [OBAMA])
    embedded = backbone.embed(batch["input_ids"])
    plugin._mix_long_tail(embedded, batch)
    first = dict(plugin.word_counts.counts)
    assert first[word_key("born")] == 1
    plugin._mix_long_tail(embedded, batch)  # the same sentence again in epoch 0: counted, no longer long-tail
    assert plugin.word_counts.counts[word_key("born")] == 2
    _, (spans, _) = plugin._mix_long_tail(embedded, batch)
    assert len(spans) == 0
    plugin.epoch = 1
    plugin._mix_long_tail(embedded, batch)
    assert plugin.word_counts.counts[word_key("born")] == 3  # epoch 1 adds nothing: the corpus was counted


def test_masked_words_are_never_mixed(backbone):
    """mlm_probability 1: every non-entity word is an MLM target, so its memory would reveal it."""
    plugin = long_tail_plugin(backbone)
    batch = encoded(backbone, [OBAMA], mlm_probability=1.0)
    embedded = backbone.embed(batch["input_ids"])
    mixed, (spans, _) = plugin._mix_long_tail(embedded, batch)
    assert len(spans) == 0 and torch.equal(mixed, embedded)
    assert plugin.word_counts.counts[word_key("born")] == 1  # still counted


def test_memory_update_after_the_pass_is_eq_4_to_6(backbone):
    plugin = long_tail_plugin(backbone, memory_gamma=0.25, memory_window=1)
    batch = encoded(backbone, [OBAMA, CURIE])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    embedded = backbone.embed(ids, attention_mask=mask)
    mixed, (spans, initial) = plugin._mix_long_tail(embedded, batch)  # what inside_features will do first
    plugin.word_counts = WordCounts()  # inside_features counts the batch again: start from the same state
    torch.manual_seed(0)
    out = plugin.inside_features(backbone, ids, mask, dict(batch)).detach()
    born = spans.keys.tolist().index(word_key("born"))
    row, start, end = (int(v[born]) for v in (spans.rows, spans.start, spans.end))
    context = window_mean(out[row:row + 1], mask[row:row + 1], torch.tensor([start]), torch.tensor([end]), 1)[0]
    slot = word_key("born") % 64
    torch.testing.assert_close(plugin.word_memory.local[slot], 0.75 * initial[born] + 0.25 * context)
    torch.testing.assert_close(plugin.word_memory.global_sum[slot], out[row, 0])
    assert float(plugin.word_memory.global_count[slot]) == 1.0
    assert not bool(plugin.word_memory.seen[word_key("in") % 64])  # "in" occurs twice: not long-tail


def test_word_memory_and_counts_round_trip(backbone):
    plugin = long_tail_plugin(backbone)
    batch = encoded(backbone, [OBAMA, CURIE])
    plugin.inside_features(backbone, batch["input_ids"], batch["attention_mask"], dict(batch))
    saved = plugin.extra_tensors()
    assert {"word_slots", "word_local", "word_global_sum", "word_global_count", "word_count_keys", "word_counts"} <= set(saved)
    other = long_tail_plugin(backbone)
    other.load_extra_tensors(saved)
    assert other.word_counts.counts == plugin.word_counts.counts
    for name in ("local", "global_sum", "global_count", "seen"):
        assert torch.equal(getattr(other.word_memory, name), getattr(plugin.word_memory, name))
    assert "long-tail words in the memory bank (at most 1 occurrences in the corpus): " in " ".join(other.card_notes())
    off = long_tail_plugin(backbone, inject_long_tail=False)
    assert off.word_memory is None and not any(k.startswith("word_") for k in off.extra_tensors())
    embedded = backbone.embed(batch["input_ids"])
    mixed, words = off._mix_long_tail(embedded, batch)
    assert words is None and mixed is embedded


def test_long_tail_max_count_must_be_positive(backbone):
    with pytest.raises(KadaptError) as err:
        build_plugin("trelm", {"long_tail_max_count": 0}, backbone.spec)
    assert str(err.value) == "config: trelm config: long_tail_max_count must be >= 1 (occurrences in the corpus), got 0"
