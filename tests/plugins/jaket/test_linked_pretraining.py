"""JAKET pre-training on linked text (T-REx-style sentences with subject/object ids) plus the MLM term."""
from __future__ import annotations

import gzip
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.data.records import RelationExample
from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective, linked_sentence
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import recipe_from_dict

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"
FACTS = [("e01", "paris", "_capital_of", "e02", "france", "paris is the capital of [MASK] ."),
         ("e03", "berlin", "_capital_of", "e04", "germany", "berlin is the capital of [MASK] ."),
         ("e05", "obama", "_born_in", "e06", "hawaii", "obama was born in [MASK] ."),
         ("e07", "curie", "_worked_in", "e01", "paris", "curie worked in [MASK] ."),
         ("Q404", "nobody", "_born_in", "e06", "hawaii", "nobody was born in [MASK] ."),
         ("e03", "berlin", "_born_in", "e06", "hawaii", "berlin was born in [MASK] .")]  # not a KG fact


def _trex(folder: Path) -> Path:
    folder.mkdir()
    with gzip.open(folder / "P1.jsonl.gz", "wt") as fh:
        for sub, sl, rel, obj, ol, sentence in FACTS:
            fh.write(json.dumps({"sub_uri": sub, "obj_uri": obj, "predicate_id": rel, "evidences": [
                {"sub_surface": sl, "obj_surface": ol, "masked_sentence": sentence}] * 3}) + "\n")
    return folder


def test_linked_sentence_spans(tiny_backbone):
    ex = RelationExample("obama was born in hawaii .", (0, 5), (18, 24), "_born_in", "s", "e05", "e06")
    feats = linked_sentence(ex, tiny_backbone.tokenizer, 32)
    tokens = tiny_backbone.tokenizer.convert_ids_to_tokens(feats["input_ids"])
    assert tokens[feats["head_start"]:feats["head_end"] + 1] == ["obama"]
    assert tokens[feats["tail_start"]:feats["tail_end"] + 1] == ["hawaii"]


def test_infusion_on_linked_text_with_mlm(tiny_backbone_dir, tmp_path, caplog):
    backbone_dir = tiny_backbone_dir("bert")
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    before = hash_state_dict(backbone.model.state_dict())
    recipe = recipe_from_dict({
        "kind": "infuse", "name": "jaket_text", "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "jaket", "config": {"fanouts": [3, 3]}},
        "objective": {"name": "jaket_pretraining", "config": {"kg": str(TINY_KG), "mask_rate": 0.5, "random_negatives": 4,
                                                             "neighbour_negatives": 2, "mlm_weight": 1.0, "mlm_rate": 0.5}},
        "data": {"format": "lama_trex", "train": str(_trex(tmp_path / "trex")), "dev_fraction": 0.2, "max_length": 32},
        "training": {"epochs": 3, "batch_size": 4, "lr": 0.01, "log_every": 1, "seed": 0},
        "output": {"dir": str(tmp_path / "out")},
    })
    with caplog.at_level(logging.WARNING):
        result = infuse(recipe, backbone=backbone)
    lines = [r.getMessage() for r in caplog.records if "JAKET linked text" in r.getMessage()]
    counts = {k: sum(int(n) for line in lines for n in re.findall(rf"{k} (\d+)", line))
              for k in ("unknown_entity", "fact_not_in_kg")}
    assert counts == {"unknown_entity": 3, "fact_not_in_kg": 3} and len(lines) <= 2  # 3 evidences each; a line per split
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] > 0 for r in rows if r["split"] == "train")
    dev = [r for r in rows if r["split"] == "dev"]
    assert dev and "mlm_accuracy" in dev[-1] and 0.0 <= dev[-1]["mlm_accuracy"] <= 1.0
    assert hash_state_dict(backbone.model.state_dict()) == before
    assert (result.run_dir / "plugin" / "memory.safetensors").exists()


def test_mlm_head_is_tied_to_the_input_embeddings():
    head = JaketPretrainingObjective(8, num_relations=2, mlm_weight=1.0, vocab_size=11)
    decoder = torch.randn(11, 8)
    features = torch.randn(1, 4, 8)
    labels = torch.tensor([[-100, 3, -100, 7]])
    batch = {"knowledge": torch.randn(2, 8), "head_node": torch.tensor([0]), "tail_node": torch.tensor([1]),
             "relation": torch.tensor([1]), "masked_row": torch.zeros(0, dtype=torch.long),
             "masked_start": torch.zeros(0, dtype=torch.long), "masked_end": torch.zeros(0, dtype=torch.long),
             "candidates": torch.zeros(0, 3, dtype=torch.long), "mlm_labels": labels, "mlm_decoder": decoder}
    out = head(features, batch)
    hidden = head.mlm_norm(torch.nn.functional.gelu(head.mlm_transform(features[labels >= 0])))
    logits = hidden @ decoder.T + head.mlm_bias
    relation = head.relation_head(torch.cat([batch["knowledge"][0], batch["knowledge"][1]])[None])
    expected = torch.nn.functional.cross_entropy(relation, batch["relation"]) + torch.nn.functional.cross_entropy(logits, labels[labels >= 0])
    assert torch.allclose(out.loss, expected) and float(out.logits[7]) == 2.0
    with pytest.raises(Exception, match="vocab_size"):
        JaketPretrainingObjective(8, mlm_weight=1.0)
