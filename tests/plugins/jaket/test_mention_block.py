"""The JAKET block against backbone_last at linked mention tokens: plain, grouped and cached inputs.

LM2 is self-attention, so knowledge merged at a mention reaches every token of THAT sequence; the
exact statement is therefore: LM2's input differs from LM1's state exactly at the linked tokens, the
JAKET block differs at them, and a sequence (or a choice / pair row) without a linked mention gets
exactly ``backbone_last``."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from kadapt.core.family import build_plugin
from kadapt.core.model import STATE_PREFIX, KnowledgeModel
from kadapt.data.encoding import collate, encode_relation
from kadapt.data.mentions import EntityLinking
from kadapt.data.records import RelationExample
from kadapt.kg import read_kg
from kadapt.plugins.jaket.kg_context import make_context
from kadapt.plugins.jaket.pretraining import build_memory

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"


@pytest.fixture(scope="module")
def model(tiny_backbone):
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"fanouts": [3, 3]}, tiny_backbone.spec)
    graph = read_kg(TINY_KG)
    plugin.attach_kg(make_context(graph, build_memory(tiny_backbone, graph, plugin), plugin))
    return KnowledgeModel(tiny_backbone, [plugin]).eval()


def _split(model, feats):
    h = model.backbone.spec.hidden_size
    return feats[..., :h], feats[..., h:]


def _inputs(rows=3, length=9):
    ids = torch.randint(5, 50, (rows, length), generator=torch.Generator().manual_seed(3))
    token_entities = torch.full_like(ids, -1)
    token_entities[0, 2:4] = 0
    token_entities[2, 5] = 7  # row 1 has no mention
    return ids, torch.ones_like(ids), token_entities


def _check_block(last, block, token_entities):
    linked = token_entities >= 0
    rows_with = linked.any(-1)
    assert torch.equal(block[~rows_with], last[~rows_with])  # no mention: exactly backbone_last
    diff = (block - last).abs().amax(-1)
    assert bool((diff[linked] > 1e-4).all())  # every linked token carries knowledge


@contextmanager
def lm2_input(model):
    """Records the merge step: ``seen["in"]`` (LM1 state) and ``seen["out"]`` (what LM2 reads)."""
    plugin, seen = model.plugins[0], {}
    merge = plugin.merge

    def recording(states, rows, knowledge):
        seen["in"], seen["out"] = states, merge(states, rows, knowledge)
        return seen["out"]

    plugin.merge = recording
    try:
        yield seen
    finally:
        del plugin.merge


def _check_lm2_input(seen, token_entities):
    """LM2's input differs from LM1's state at exactly the linked tokens (every one of them)."""
    changed = (seen["out"] != seen["in"]).any(-1)
    assert torch.equal(changed, token_entities.reshape(changed.shape) >= 0)


def test_plain_block_differs_at_mentions_and_lm2_input_exactly_there(model):
    ids, mask, token_entities = _inputs()
    with lm2_input(model) as seen:
        last, block = _split(model, model.batch_features({"input_ids": ids, "attention_mask": mask,
                                                          "token_entities": token_entities}))
    _check_block(last, block, token_entities)
    _check_lm2_input(seen, token_entities)
    assert not torch.equal(block[0, 6], last[0, 6])  # ...and LM2 attention spreads it in that row


def test_grouped_choice_and_pair_rows_see_their_mentions(model):
    ids, mask, token_entities = _inputs(rows=4)
    token_entities[3, 1] = 4
    grouped = {"input_ids": ids.view(2, 2, -1), "attention_mask": mask.view(2, 2, -1),
               "token_entities": token_entities.view(2, 2, -1), "labels": torch.tensor([0, 1])}
    with lm2_input(model) as seen:
        feats = model.batch_features(grouped)
    assert feats.shape == (2, 2, 9, model.feature_size)
    last, block = _split(model, feats.flatten(0, 1))
    _check_block(last, block, token_entities)
    _check_lm2_input(seen, token_entities)
    flat = model.features(ids, mask, batch={"token_entities": token_entities})
    assert torch.allclose(feats.flatten(0, 1), flat, atol=1e-6)  # same as the rows encoded one by one


def test_cached_states_give_the_live_block(model):
    ids, mask, token_entities = _inputs()
    states = model.backbone.encode(ids, mask, model.required_layers())
    batch = {"input_ids": ids, "attention_mask": mask, "token_entities": token_entities,
             **{f"{STATE_PREFIX}{k}": v for k, v in states.items()}}
    with lm2_input(model) as seen:
        cached = model.batch_features(batch)
    _check_lm2_input(seen, token_entities)
    live = model.batch_features({"input_ids": ids, "attention_mask": mask, "token_entities": token_entities})
    assert torch.equal(cached, live)
    _check_block(*_split(model, cached), token_entities)


def test_relation_input_from_reader_ids_reaches_the_block(model, tiny_backbone):
    graph = read_kg(TINY_KG)
    rows = {e: i for i, e in enumerate(graph.entity_ids)}
    linking = EntityLinking(rows)
    records = [RelationExample("paris is the capital of france", (0, 5), (24, 30), "P1", "a", "e01", "e02"),
               RelationExample("paris is the capital of france", (0, 5), (24, 30), "P1", "b", "Q1", "")]
    feats = [encode_relation(r, tiny_backbone.tokenizer, 32, linking=linking) for r in records]
    batch = collate(feats, tiny_backbone.tokenizer.pad_token_id)
    last, block = _split(model, model.batch_features(batch))
    _check_block(last, block, batch["token_entities"])
    assert int((batch["token_entities"][0] >= 0).sum()) == 2 and linking.stats.dropped == {"unknown_id": 1}
    assert linking.stats.coverage()["any_linked"] == 0.5


def test_fewshot_pair_rows_carry_each_sentence_mentions_to_the_block(model, tiny_backbone):
    """A real PAIR episode (query + support in one row): the linked tokens are the word pieces of the
    four gold mentions (both sentences), LM2 reads knowledge exactly there, and a pair row whose
    entities the KG does not know gets exactly ``backbone_last``."""
    from kadapt.tasks.fewshot_pair import FewShotEpisode, FewShotPair

    graph = read_kg(TINY_KG)
    rows = {e: i for i, e in enumerate(graph.entity_ids)}
    paris = RelationExample("paris is the capital of france", (0, 5), (24, 30), "P1", "q", "e01", "e02")
    berlin = RelationExample("berlin is the capital of germany", (0, 6), (25, 32), "P1", "s1", "e03", "e04")
    unknown = RelationExample("curie was born in warsaw", (0, 5), (18, 24), "P2", "s2", "Q7186", "Q270")
    head = FewShotPair(model.feature_size, n_way=2, k_shot=1)
    head.linking = EntityLinking(rows)
    feats = head.encode(FewShotEpisode(paris, ((berlin,), (unknown,)), ("P1", "P2"), 0),
                        tiny_backbone.tokenizer, 48)
    batch = collate([feats], tiny_backbone.tokenizer.pad_token_id)
    token_entities = batch["token_entities"]
    words = [tiny_backbone.tokenizer.convert_ids_to_tokens(row) for row in feats["input_ids"]]
    linked = [[(words[r][t], e) for t, e in enumerate(row) if e >= 0] for r, row in enumerate(feats["token_entities"])]
    # row 0: query + berlin support, all four entities; row 1: query's two (the support's ids are unknown)
    assert linked[0] == [("paris", rows["e01"]), ("france", rows["e02"]), ("berlin", rows["e03"]), ("germany", rows["e04"])]
    assert linked[1] == [("paris", rows["e01"]), ("france", rows["e02"])]
    assert head.linking.stats.dropped == {"unknown_id": 2}
    with lm2_input(model) as seen:
        out = model.batch_features(batch)
    _check_lm2_input(seen, token_entities)
    last, block = _split(model, out.flatten(0, 1))
    _check_block(last, block, token_entities.flatten(0, 1))
    bare = head.encode(FewShotEpisode(unknown, ((unknown,), (unknown,)), ("P1", "P2"), 0), tiny_backbone.tokenizer, 48)
    assert all(e == -1 for row in bare["token_entities"] for e in row)
    plain = collate([bare], tiny_backbone.tokenizer.pad_token_id)
    last, block = _split(model, model.batch_features(plain))
    assert torch.equal(block, last)  # no linked mention in any pair row: exactly backbone_last
