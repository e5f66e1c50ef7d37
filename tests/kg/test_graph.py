"""KnowledgeGraph construction, CSR adjacency, and defined behaviour on awkward graphs."""
from __future__ import annotations

import pytest
import torch

from kadapt.core.errors import KadaptError
from kadapt.kg import KnowledgeGraph

ENTITIES = [("a", "alpha", "alpha, the first"), ("b", "beta", None), ("c", None, None), ("d", "delta", "delta, a lone one")]
RELATIONS = [("r0", "likes", None), ("r1", "knows", "is acquainted with")]


def small(triples) -> KnowledgeGraph:
    return KnowledgeGraph.build(ENTITIES, RELATIONS, triples, categories={"a": "x", "b": "y"})


def test_awkward_graph_has_defined_behaviour():
    g = small([(0, 0, 1), (0, 0, 1), (1, 1, 1), (2, 1, 0)])  # duplicate, self-loop, d isolated
    assert g.num_triples == 3 and g.stats["duplicate_triples"] == 1
    assert g.stats["self_loops"] == 1 and g.stats["isolated_entities"] == 1
    # missing descriptions fall back to the name, a missing name to the id
    assert g.entity_descriptions[1] == "beta" and g.entity_names[2] == "c" and g.entity_descriptions[2] == "c"
    assert g.stats["entities_without_description"] == 2
    assert g.entity_texts()[0] == ("alpha", "alpha, the first")
    assert g.relation_texts()[1] == ("knows", "knows, is acquainted with") and len(g.relation_texts()) == 4
    assert g.category_tensor().tolist() == [0, 1, -100, -100] and g.stats["entities_without_category"] == 2


def test_csr_lists_each_entity_neighbours_with_inverse_relations():
    g = small([(0, 0, 1), (2, 1, 0), (1, 1, 1)])
    csr = g.csr(inverse=True)
    assert csr.indptr.tolist() == [0, 2, 5, 6, 6]  # d (isolated) has none
    by_node = {v: sorted(zip(csr.neighbors[csr.indptr[v]:csr.indptr[v + 1]].tolist(),
                             csr.relations[csr.indptr[v]:csr.indptr[v + 1]].tolist())) for v in range(4)}
    assert by_node[0] == [(1, 0), (2, 1 + 2)]  # a likes b; c knows a, read backwards = inverse knows
    assert by_node[1] == [(0, 0 + 2), (1, 1), (1, 1 + 2)]  # self-loop appears both ways
    forward = g.csr(inverse=False)
    assert forward.indptr.tolist() == [0, 1, 2, 3, 3]


def test_empty_graph_and_bad_ids_are_clear_errors():
    with pytest.raises(KadaptError, match="no entities"):
        KnowledgeGraph.build([], RELATIONS, [])
    with pytest.raises(KadaptError, match="listed twice"):
        KnowledgeGraph.build([("a", None, None), ("a", None, None)], RELATIONS, [])
    with pytest.raises(KadaptError, match="indexes outside"):
        small([(0, 5, 1)])
    g = small([])  # entities but no triples: every entity is isolated
    assert g.num_triples == 0 and g.stats["isolated_entities"] == 4 and g.csr().neighbors.numel() == 0


def test_subgraph_keeps_only_inside_triples():
    g = small([(0, 0, 1), (2, 1, 0), (1, 1, 3)])
    sub = g.subgraph(torch.tensor([True, True, False, False]))
    assert sub.entity_ids == ["a", "b"] and sub.triples.tolist() == [[0, 0, 1]]
    assert sub.entity_categories == ["x", "y"]
