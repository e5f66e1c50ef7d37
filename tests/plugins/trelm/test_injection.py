"""TRELM knowledge-triple injection: KG entity/relation vectors encoded by the frozen backbone, mixed
into h_e of eq. 7 at important entity tokens; counted skips and one-line errors for bad inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.data.encoding import collate
from kadapt.core.objective import build_objective
from kadapt.data.records import RelationExample
from kadapt.kg.readers import read_kg
from kadapt.plugins.trelm.knowledge import KGInjection, injection_embedding

OBAMA = RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "r:1")
PARIS = RelationExample("Paris is the capital of France .", (0, 5), (24, 30), "P1376", "r:2")
CURIE = RelationExample("Marie Curie worked in Paris .", (0, 11), (22, 27), "P937", "r:3")


@pytest.fixture()
def kg_dir(tmp_path):
    root = tmp_path / "kg"
    root.mkdir()
    (root / "entity2text.txt").write_text("e1\tBarack Obama, president of the United States\n"
                                          "e2\tHawaii, a state of the United States\ne3\tFrance, a country\n")
    (root / "relation2text.txt").write_text("P19\tplace of birth\nP1376\tcapital of\n")
    (root / "train.tsv").write_text("e1\tP19\te2\n")
    return root


def hand_text_vector(backbone, text: str) -> torch.Tensor:
    enc = backbone.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        states = backbone.model(**enc).last_hidden_state[0]
    return states[1:-1].mean(0)  # content tokens: without [CLS] and [SEP]


def test_kg_vectors_are_the_frozen_backbone_encoding_of_the_texts(backbone, kg_dir):
    graph = read_kg(kg_dir)
    kg = KGInjection.from_graph(backbone, graph)
    from kadapt.plugins.trelm.objective import entity_key

    vectors, found = kg.entity_vectors(torch.tensor([entity_key("barack obama"), entity_key("Paris")]))
    assert found.tolist() == [True, False]
    torch.testing.assert_close(vectors[0], hand_text_vector(backbone, "Barack Obama, president of the United States"),
                               atol=1e-5, rtol=1e-4)
    assert torch.equal(vectors[1], torch.zeros_like(vectors[1]))
    by_id = kg.relation_vectors(torch.tensor([entity_key("P19")]))
    by_name = kg.relation_vectors(torch.tensor([entity_key("place of birth")]))
    torch.testing.assert_close(by_id[0], hand_text_vector(backbone, "place of birth"), atol=1e-5, rtol=1e-4)
    assert torch.equal(by_id, by_name)
    with pytest.raises(KadaptError, match=r"relation \(key \d+\) is not a relation of the KG .*kg .*inject_relation: false"):
        kg.relation_vectors(torch.tensor([entity_key("P937")]))


def test_injection_embedding_by_hand():
    tokens = torch.tensor([[[3.0, 4.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]]])  # norms 5, 2 | 1, 1
    entity = torch.tensor([[1.0, 0.0], [9.0, 9.0]])
    found = torch.tensor([True, False])
    relation = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    out = injection_embedding(tokens, entity, found, relation)
    s = 2 ** -0.5
    # row 0 (KG entity): ‖E_p‖ · normalize([1,0] + [0,1]) ; row 1 (no KG row): the token's own direction + [0,1]
    torch.testing.assert_close(out[0], torch.tensor([[5 * s, 5 * s], [2 * s, 2 * s]]))
    torch.testing.assert_close(out[1], torch.tensor([[s, s], [0.0, 1.0]]))
    torch.testing.assert_close(injection_embedding(tokens, None, None, None), tokens)


def plugin_batch(backbone, kg_dir, records, **config):
    plugin = build_plugin("trelm", {"neurons_per_layer": [2], "memory_slots": 8, "important_fraction": 1.0,
                                    "inject_kg": str(kg_dir), **config}, backbone.spec)
    plugin.train()
    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size, {"inject_both_directions": False})
    head.bind_backbone(backbone)
    batch = collate([head.encode(r, backbone.tokenizer, 32) for r in records], backbone.tokenizer.pad_token_id)
    return plugin, batch


def test_mixing_puts_kg_entity_and_relation_into_important_tokens(backbone, kg_dir):
    plugin, batch = plugin_batch(backbone, kg_dir, [OBAMA, PARIS])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    embedded = backbone.embed(ids)
    mixed, initial = plugin._mix_memory(backbone, ids, mask, embedded, batch)
    assert plugin.injection.skipped_entities == 1  # "Paris" has no KG row: counted, its tokens keep E_p's direction
    subject = plugin._subject_mask(batch, ids.shape[1])
    lam = plugin.current_lambda
    local, glob = plugin.memory.lookup(batch["subj_key"], initial)
    rel = [hand_text_vector(backbone, t) for t in ("place of birth", "capital of")]
    ent = hand_text_vector(backbone, "Barack Obama, president of the United States")
    for row in range(2):
        for t in subject[row].nonzero().flatten().tolist():
            e_p = embedded[row, t]
            own = ent if row == 0 else e_p
            h = e_p.norm() * F.normalize(F.normalize(own, dim=0) + F.normalize(rel[row], dim=0), dim=0)
            torch.testing.assert_close(mixed[row, t], (1 - lam) * h + lam / 2 * (local[row] + glob[row]),
                                       atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed[~subject], embedded[~subject])
    notes = " ".join(plugin.card_notes())
    assert "important mentions without a KG row: 1" in notes


def test_switches_off_leave_the_token_embedding(backbone, kg_dir):
    plugin, batch = plugin_batch(backbone, kg_dir, [CURIE], inject_entity=False, inject_relation=False)
    embedded = backbone.embed(batch["input_ids"])
    torch.testing.assert_close(plugin.injected(backbone, embedded, batch, torch.tensor([True])), embedded)


def test_bad_injection_inputs(backbone, kg_dir):
    plugin, batch = plugin_batch(backbone, kg_dir, [OBAMA, CURIE])  # P937 is not in the KG
    with pytest.raises(KadaptError, match="not a relation of the KG"):
        plugin._mix_memory(backbone, batch["input_ids"], batch["attention_mask"],
                           backbone.embed(batch["input_ids"]), batch)
    with pytest.raises(KadaptError, match="inject_kg is set but important_fraction is 0"):
        build_plugin("trelm", {"inject_kg": str(kg_dir), "important_fraction": 0.0}, backbone.spec)
    plugin, batch = plugin_batch(backbone, kg_dir, [OBAMA], important_fraction=0.5)  # round(0.5) = 0 rows chosen
    plugin._mix_memory(backbone, batch["input_ids"], batch["attention_mask"], backbone.embed(batch["input_ids"]), batch)
    assert plugin.injection_stats == {"batches_without_important_entity": 1}
    missing = build_plugin("trelm", {"neurons_per_layer": [2], "inject_kg": str(kg_dir / "nope")}, backbone.spec).train()
    with pytest.raises(KadaptError, match="nope: KG folder not found"):
        missing.injected(backbone, backbone.embed(batch["input_ids"]), batch, torch.tensor([True]))


def test_both_directions_mask_the_head_for_half_the_sentences(backbone):
    from kadapt.plugins.trelm.objective import IGNORE, entity_key, predicts_head

    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size, {"mlm_probability": 0.0})
    records = [RelationExample(r.text, r.subj_span, r.obj_span, r.label, f"s:{i}")
               for i, r in enumerate([OBAMA, PARIS, CURIE] * 3)]
    draws = [predicts_head(r) for r in records]
    assert True in draws and False in draws  # both directions occur
    for record, head_first in zip(records, draws):
        feats = head.encode(record, backbone.tokenizer, 32)
        target, visible = (record.subj_span, record.obj_span) if head_first else (record.obj_span, record.subj_span)
        masked = backbone.tokenizer.decode([t for t, label in zip(feats["input_ids"], feats["cka_labels"])
                                            if label != IGNORE]).split()
        assert set(masked) == {backbone.tokenizer.mask_token}
        gold = backbone.tokenizer.decode([label for label in feats["cka_labels"] if label != IGNORE])
        assert gold.replace(" ", "") == record.text[target[0]:target[1]].lower().replace(" ", "")
        assert feats["subj_key"] == entity_key(record.text[visible[0]:visible[1]])
        assert feats["rel_key"] == entity_key(record.label)
    one_way = build_objective("trelm_knowledge", 8, {"inject_both_directions": False})
    assert all(one_way.encode(r, backbone.tokenizer, 32)["subj_key"] == entity_key(r.text[r.subj_span[0]:r.subj_span[1]])
               for r in records)


def test_si_chooses_the_cka_targets(backbone, kg_dir):
    plugin, batch = plugin_batch(backbone, kg_dir, [OBAMA, PARIS], important_fraction=0.5)
    from kadapt.core.model import KnowledgeModel
    from kadapt.plugins.trelm.objective import IGNORE

    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("trelm_knowledge", model.feature_size, {"inject_both_directions": False})
    model.head.bind_backbone(backbone)
    model.train()
    torch.manual_seed(3)
    features = model.batch_features(batch)
    important = batch["si_important"]  # set by the plug-in's pass: the top half by SI
    subject = plugin._subject_mask(batch, batch["input_ids"].shape[1])
    assert torch.equal(important, plugin.important_rows(backbone, batch["input_ids"], batch["attention_mask"], subject))
    assert int(important.sum()) == 1
    torch.manual_seed(4)
    loss = model.head(features, batch).loss
    by_hand = {k: v for k, v in batch.items() if k != "si_important"}
    by_hand["cka_labels"] = batch["cka_labels"].masked_fill(~important[:, None], IGNORE)
    torch.manual_seed(4)
    torch.testing.assert_close(loss, model.head(features, by_hand).loss)
    torch.manual_seed(4)
    assert not torch.allclose(loss, model.head(features, {k: v for k, v in by_hand.items()
                                                          if k != "cka_labels"} | {"cka_labels": batch["cka_labels"]}).loss)
