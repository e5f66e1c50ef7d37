"""The knowledge-effect benchmark's shortcut: heads trained on features kept at their ``*_pos`` positions
give exactly the logits of the same heads over the full ``KnowledgeModel`` features."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.data.formats import read_records
from kadapt.core.objective import build_objective

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import knowledge_effect as ke

FIXTURES = REPO / "tests" / "fixtures"


def _case(name: str, feature_size: int):
    if name == "entity_typing":
        records = read_records("open_entity", FIXTURES / "open_entity_crowd.json")
        return records, build_objective(name, feature_size, {"labels": ["event", "location", "organization", "person", "place"]})
    if name == "relation_semeval":
        records = read_records("semeval2010", FIXTURES / "semeval2010_task8.txt")
        return records, build_objective(name, feature_size, {"labels": sorted({r.label for r in records})})
    head = build_objective(name, feature_size, {"n_way": 2, "train_episodes": 6, "hidden_size": 8})
    return head.prepare_records(read_records("fewrel", FIXTURES / "fewrel_4rel.json"), "train", 0), head


@pytest.mark.parametrize("name", ["entity_typing", "relation_semeval", "fewshot_pair"])
def test_kept_positions_reproduce_full_feature_logits(name, tiny_backbone):
    model = KnowledgeModel(tiny_backbone, [])
    torch.manual_seed(0)
    records, head = _case(name, model.feature_size)
    model.head = head.eval()
    batch = collate([head.encode(r, tiny_backbone.tokenizer, 96) for r in records], tiny_backbone.tokenizer.pad_token_id)
    with torch.no_grad():
        full = model(batch).logits
        ids, mask = batch["input_ids"], batch["attention_mask"]
        feats = (model.features(ids.flatten(0, 1), mask.flatten(0, 1)).unflatten(0, ids.shape[:2]) if ids.dim() == 3
                 else model.features(ids, mask))
        kept, rewritten = ke.gather_positions(feats, batch)
        compact = head(kept, {**batch, **rewritten}).logits
    torch.testing.assert_close(compact, full)
    assert kept.shape[-2] == len([k for k in batch if k.endswith("_pos")])


def test_variant_columns_slice_backbone_and_plugins():
    assert ke.variant_columns("bare", 3, [2, 4]).tolist() == [0, 1, 2]
    assert ke.variant_columns("+F", 3, [2, 4]).tolist() == [0, 1, 2, 3, 4]
    assert ke.variant_columns("+L", 3, [2, 4]).tolist() == [0, 1, 2, 5, 6, 7, 8]
    assert ke.variant_columns("+F+L", 3, [2, 4]).tolist() == list(range(9))
