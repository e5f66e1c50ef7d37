"""Optional DGL interop (extra ``dgl``, tested with dgl 1.1.3): plain tensors/lists ⇄ ``dgl.DGLGraph``.

The graph goes over as a directed graph with one edge per triple (head → tail) and edge data
``rel`` (relation index); entity and relation ids and texts travel as Python lists in
``graph.kadapt`` (DGL stores only tensors). The GNN itself runs on PyTorch Geometric.

This module knows nothing of ``KnowledgeGraph`` (``kadapt.kg.graph`` imports it, not the other way):
:func:`build_dgl` takes the graph's triples and texts, :func:`dgl_parts` returns the arguments of
``KnowledgeGraph.build``. Use ``KnowledgeGraph.to_dgl()`` / ``KnowledgeGraph.from_dgl(g)``.
"""
from __future__ import annotations

from typing import Any

import torch

from kadapt.core.errors import KadaptError

#: The lists carried in ``g.kadapt`` (same names as the ``KnowledgeGraph`` fields).
TEXT_FIELDS = ("entity_ids", "entity_names", "entity_descriptions", "relation_ids", "relation_names",
               "relation_descriptions", "entity_categories")


def _dgl():
    try:
        import dgl
    except ImportError as err:
        raise KadaptError(f"DGL interop needs the optional extra: pip install 'kadapt[dgl]' (dgl==1.1.3); "
                          f"import failed: {err}") from None
    return dgl


def build_dgl(triples: torch.Tensor, num_nodes: int, texts: dict[str, list]):
    """A ``dgl.DGLGraph`` from ``(T, 3)`` head-relation-tail ``triples`` with ``edata['rel']``.

    ``texts`` (lists named as in :data:`TEXT_FIELDS`) is attached, copied, as ``.kadapt``.
    """
    dgl = _dgl()
    g = dgl.graph((triples[:, 0], triples[:, 2]), num_nodes=num_nodes)
    g.edata["rel"] = triples[:, 1].clone()
    g.kadapt = {key: list(texts.get(key) or []) for key in TEXT_FIELDS}
    return g


def dgl_parts(g, *, relation_key: str = "rel", entity_ids: list[str] | None = None,
              relation_ids: list[str] | None = None, source: str = "<dgl graph>") -> dict[str, Any]:
    """The arguments of ``KnowledgeGraph.build`` for a DGL graph (texts from ``g.kadapt`` when it has them).

    Returns ``{"entities", "relations", "triples", "categories", "source"}``.
    """
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
    return {"entities": list(zip(ent_ids, names, texts)), "relations": list(zip(rel_ids, rel_names, rel_texts)),
            "triples": triples, "categories": categories, "source": source}


def to_dgl(graph):
    """A ``dgl.DGLGraph`` for any object with a ``KnowledgeGraph``'s fields (``triples``, ``entity_ids``, ...)."""
    return build_dgl(graph.triples, len(graph.entity_ids), {key: getattr(graph, key) for key in TEXT_FIELDS})


def from_dgl(g, graph_cls, **kwargs):
    """``graph_cls.build(**dgl_parts(g, **kwargs))``: pass ``KnowledgeGraph`` (or a subclass) as ``graph_cls``."""
    return graph_cls.build(**dgl_parts(g, **kwargs))
