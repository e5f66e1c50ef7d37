"""Optional DGL interop (dgl==1.1.3); skipped where DGL is not installed."""
from __future__ import annotations

import builtins

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.kg import KnowledgeGraph

ENTITIES = [("a", "alpha", "alpha, first"), ("b", "beta", "beta, second"), ("c", "gamma", None)]
RELATIONS = [("r0", "likes", None), ("r1", "knows", None)]


def test_roundtrip_through_dgl():
    pytest.importorskip("dgl")
    g = KnowledgeGraph.build(ENTITIES, RELATIONS, [(0, 1, 1), (1, 0, 2), (2, 0, 2)], categories={"a": "x"})
    d = g.to_dgl()
    assert d.num_nodes() == 3 and d.num_edges() == 3 and d.edata["rel"].tolist() == g.triples[:, 1].tolist()
    back = KnowledgeGraph.from_dgl(d)
    assert torch.equal(back.triples, g.triples) and back.entity_ids == g.entity_ids
    assert back.entity_descriptions == g.entity_descriptions and back.entity_categories == g.entity_categories
    import dgl

    plain = dgl.graph((torch.tensor([0, 1]), torch.tensor([1, 1])), num_nodes=3)
    kg = KnowledgeGraph.from_dgl(plain)
    assert kg.entity_ids == ["0", "1", "2"] and kg.relation_ids == ["0"] and kg.stats["isolated_entities"] == 1


def test_clear_error_without_dgl(monkeypatch):
    real_import = builtins.__import__

    def no_dgl(name, *args, **kwargs):
        if name == "dgl":
            raise ImportError("No module named 'dgl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dgl)
    g = KnowledgeGraph.build(ENTITIES, RELATIONS, [(0, 1, 1)])
    with pytest.raises(KadaptError, match="dgl==1.1.3"):
        g.to_dgl()
