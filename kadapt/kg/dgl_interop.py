"""Optional DGL interop (extra ``dgl``, tested with dgl 1.1.3): ``KnowledgeGraph`` ⇄ ``dgl.DGLGraph``.

The graph goes over as a directed graph with one edge per triple (head → tail) and edge data
``rel`` (relation index); entity and relation ids and texts travel as Python lists in
``graph.kadapt`` (DGL stores only tensors). The GNN itself runs on PyTorch Geometric.
"""
from __future__ import annotations

import torch

from kadapt.core.errors import KadaptError
from kadapt.kg.graph import KnowledgeGraph


def _dgl():
    try:
        import dgl
    except ImportError as err:
        raise KadaptError(f"DGL interop needs the optional extra: pip install 'kadapt[dgl]' (dgl==1.1.3); "
                          f"import failed: {err}") from None
    return dgl


def to_dgl(graph: KnowledgeGraph):
    """A ``dgl.DGLGraph`` with ``edata['rel']`` and the KG's text attached as ``.kadapt``."""
    dgl = _dgl()
    t = graph.triples
    g = dgl.graph((t[:, 0], t[:, 2]), num_nodes=graph.num_entities)
    g.edata["rel"] = t[:, 1].clone()
    g.kadapt = {
        "entity_ids": list(graph.entity_ids), "entity_names": list(graph.entity_names),
        "entity_descriptions": list(graph.entity_descriptions),
        "relation_ids": list(graph.relation_ids), "relation_names": list(graph.relation_names),
        "relation_descriptions": list(graph.relation_descriptions),
        "entity_categories": list(graph.entity_categories),
    }
    return g


def from_dgl(g, *, relation_key: str = "rel", entity_ids: list[str] | None = None,
             relation_ids: list[str] | None = None, source: str = "<dgl graph>") -> KnowledgeGraph:
    """Build a ``KnowledgeGraph`` from a DGL graph (texts from ``g.kadapt`` when it came from ``to_dgl``)."""
    _dgl()
    src, dst = g.edges()
    if relation_key in g.edata:
        rel = g.edata[relation_key].long()
    else:
        rel = torch.zeros_like(src)
    info = getattr(g, "kadapt", None) or {}
    n = g.num_nodes()
    ent_ids = entity_ids or info.get("entity_ids") or [str(i) for i in range(n)]
    num_rel = int(rel.max()) + 1 if rel.numel() else 0
    rel_ids = relation_ids or info.get("relation_ids") or [str(i) for i in range(num_rel)]
    if len(ent_ids) != n:
        raise KadaptError(f"{source}: {len(ent_ids)} entity ids for {n} nodes")
    names = info.get("entity_names") or [None] * n
    texts = info.get("entity_descriptions") or [None] * n
    rel_names = info.get("relation_names") or [None] * len(rel_ids)
    rel_texts = info.get("relation_descriptions") or [None] * len(rel_ids)
    cats = info.get("entity_categories") or []
    categories = {e: c for e, c in zip(ent_ids, cats) if c is not None} or None
    triples = torch.stack([src.long(), rel, dst.long()], dim=1)
    return KnowledgeGraph.build(list(zip(ent_ids, names, texts)), list(zip(rel_ids, rel_names, rel_texts)),
                                triples, categories=categories, source=source)
