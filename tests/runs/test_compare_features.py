"""Frozen-feature shortcut of ``kadapt compare``: heads over features kept at their ``kept_positions``
give exactly the logits of the same heads over the full ``KnowledgeModel`` features."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import build_objective
from kadapt.data.encoding import collate
from kadapt.data.formats import read_records
from kadapt.runs.compare_features import gather_positions, split_tensors

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


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
    encoded = [head.encode(r, tiny_backbone.tokenizer, 96) for r in records]
    batch = collate(encoded, tiny_backbone.tokenizer.pad_token_id)
    keys = head.kept_positions()
    with torch.no_grad():
        full = model(batch).logits
        ids, mask = batch["input_ids"], batch["attention_mask"]
        feats = (model.features(ids.flatten(0, 1), mask.flatten(0, 1)).unflatten(0, ids.shape[:2]) if ids.dim() == 3
                 else model.features(ids, mask))
        kept = gather_positions(feats, batch, keys)
        rest = split_tensors(encoded, keys, tiny_backbone.tokenizer.pad_token_id)
        compact = head(kept, rest).logits
    torch.testing.assert_close(compact, full)
    assert kept.shape[-2] == len(keys) and "input_ids" not in rest


def test_heads_that_read_whole_sequences_keep_no_positions():
    assert build_objective("relation_classification", 8, {"labels": ["a", "b"], "pooling": "mean"}).kept_positions() is None
    assert build_objective("relation_classification", 8, {"labels": ["a", "b"]}).kept_positions() == ("subj_pos", "obj_pos")
    assert build_objective("fewshot_pair", 8, {"n_way": 2, "pooling": "cls"}).kept_positions() is None
