"""``KnowledgeGraph``: entities and relations with text, head-relation-tail triples, CSR adjacency.

Entities and relations are addressed by dense indices ``0..N-1`` / ``0..P-1``; their original ids
(``"00260881"``, ``"Q42"``, ``"P31"``) are kept in ``entity_ids`` / ``relation_ids``. Construction
defines the behaviour on awkward graphs instead of failing deep inside torch:

* a triple naming an unknown entity or relation is a :class:`~kadapt.core.errors.DataError` (the readers
  name file and line; ``on_error="skip"`` counts and logs it instead);
* an entity without a description uses its name, and one without a name its id (counted in ``stats``);
* self-loops are kept as ordinary edges (an entity may relate to itself); duplicate triples are
  dropped and counted; isolated entities have no neighbours (the GAT leaves them at their own embedding);
* an empty graph (no entity) cannot be embedded or sampled: it is a ``KadaptError``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from kadapt.core.errors import KadaptError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CSR:
    """Neighbours of every entity: ``neighbors[indptr[v]:indptr[v+1]]`` with relation ``relations[...]``.

    ``relations`` index ``0..2P-1``: ``r`` for an edge ``(v, r, u)`` read forwards, ``P + r`` for
    ``(u, r, v)`` read backwards (the inverse relation), when built with ``inverse=True``.
    """

    indptr: torch.Tensor
    neighbors: torch.Tensor
    relations: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return self.indptr.numel() - 1

    def degree(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]


@dataclass
class KnowledgeGraph:
    """A KG with entity/relation text. Build with :meth:`build` (validates) or a reader in ``kg.readers``."""

    entity_ids: list[str]
    entity_names: list[str]
    entity_descriptions: list[str]
    relation_ids: list[str]
    relation_names: list[str]
    relation_descriptions: list[str]
    triples: torch.Tensor  # (T, 3) long: head, relation, tail (dense indices), deduplicated
    entity_categories: list[str | None] = field(default_factory=list)
    source: str = "<graph>"
    stats: dict[str, int] = field(default_factory=dict)
    _csr: dict[bool, CSR] = field(default_factory=dict, repr=False)
    _entity_index: dict[str, int] | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        entities: list[tuple[str, str | None, str | None]],
        relations: list[tuple[str, str | None, str | None]],
        triples: list[tuple[int, int, int]] | torch.Tensor,
        *,
        categories: dict[str, str] | None = None,
        source: str = "<graph>",
        stats: dict[str, int] | None = None,
    ) -> KnowledgeGraph:
        """``entities``/``relations``: ``(id, name, description)``; ``triples`` in dense indices.

        Raises ``KadaptError`` for an empty graph or duplicate ids, ``DataError``-free otherwise: the
        readers resolve ids (and report unknown ones with file and line) before calling this.
        """
        if not entities:
            raise KadaptError(f"{source}: the knowledge graph has no entities; nothing to embed or sample")
        stats = dict(stats or {})
        ent_ids = [e[0] for e in entities]
        rel_ids = [r[0] for r in relations]
        for kind, ids in (("entity", ent_ids), ("relation", rel_ids)):
            if len(set(ids)) != len(ids):
                seen, dup = set(), None
                for i in ids:
                    if i in seen:
                        dup = i
                        break
                    seen.add(i)
                raise KadaptError(f"{source}: {kind} id {dup!r} is listed twice")
        names, descriptions = _texts(entities, "entities_without_description", stats)
        rel_names, rel_descriptions = _texts(relations, "relations_without_description", stats)
        tensor = torch.as_tensor(triples, dtype=torch.long).reshape(-1, 3)
        if tensor.numel():
            bad_e = (tensor[:, [0, 2]] < 0) | (tensor[:, [0, 2]] >= len(entities))
            bad_r = (tensor[:, 1] < 0) | (tensor[:, 1] >= len(relations))
            if bad_e.any() or bad_r.any():
                row = int(torch.nonzero(bad_e.any(1) | bad_r)[0])
                raise KadaptError(f"{source}: triple {row} {tensor[row].tolist()} indexes outside "
                                  f"{len(entities)} entities / {len(relations)} relations")
        unique = torch.unique(tensor, dim=0) if tensor.numel() else tensor
        stats["duplicate_triples"] = stats.get("duplicate_triples", 0) + int(tensor.shape[0] - unique.shape[0])
        stats["self_loops"] = int((unique[:, 0] == unique[:, 2]).sum()) if unique.numel() else 0
        touched = torch.zeros(len(entities), dtype=torch.bool)
        if unique.numel():
            touched[unique[:, 0]] = True
            touched[unique[:, 2]] = True
        stats["isolated_entities"] = int((~touched).sum())
        cats: list[str | None] = []
        if categories:
            cats = [categories.get(e) for e in ent_ids]
            stats["entities_without_category"] = sum(c is None for c in cats)
        graph = cls(ent_ids, names, descriptions, rel_ids, rel_names, rel_descriptions, unique, cats, source, stats)
        for key in ("duplicate_triples", "entities_without_description", "relations_without_description"):
            if stats.get(key):
                log.info("%s: %s = %d", source, key, stats[key])
        return graph

    # ----------------------------------------------------------------- sizes and lookups
    @property
    def num_entities(self) -> int:
        return len(self.entity_ids)

    @property
    def num_relations(self) -> int:
        return len(self.relation_ids)

    @property
    def num_triples(self) -> int:
        return int(self.triples.shape[0])

    def entity_index(self, entity_id: str) -> int:
        if self._entity_index is None:
            self._entity_index = {e: i for i, e in enumerate(self.entity_ids)}
        try:
            return self._entity_index[entity_id]
        except KeyError:
            raise KadaptError(f"{self.source}: unknown entity {entity_id!r}") from None

    def category_labels(self) -> list[str]:
        return sorted({c for c in self.entity_categories if c is not None})

    def category_tensor(self, labels: list[str] | None = None) -> torch.Tensor:
        """Category index per entity (``-100`` where unknown or not in ``labels``)."""
        labels = labels if labels is not None else self.category_labels()
        index = {c: i for i, c in enumerate(labels)}
        cats = self.entity_categories or [None] * self.num_entities
        return torch.tensor([index.get(c, -100) if c is not None else -100 for c in cats], dtype=torch.long)

    def entity_texts(self) -> list[tuple[str, str]]:
        """``(mention, description text)`` per entity: the text starts with the mention (eq. 7)."""
        return [(n, _with_mention(n, d)) for n, d in zip(self.entity_names, self.entity_descriptions)]

    def relation_texts(self, inverse: bool = True) -> list[tuple[str, str]]:
        """``(mention, description text)`` per relation, then per inverse relation when asked."""
        out = [(n, _with_mention(n, d)) for n, d in zip(self.relation_names, self.relation_descriptions)]
        if inverse:
            out += [(f"inverse of {n}", f"inverse of {_with_mention(n, d)}")
                    for n, d in zip(self.relation_names, self.relation_descriptions)]
        return out

    # ----------------------------------------------------------------- adjacency
    def csr(self, inverse: bool = True) -> CSR:
        """Neighbour lists sorted by entity (cached). ``inverse`` adds each edge read backwards."""
        if inverse not in self._csr:
            self._csr[inverse] = _build_csr(self.triples, self.num_entities, self.num_relations, inverse)
        return self._csr[inverse]

    def subgraph(self, entity_mask: torch.Tensor, source: str | None = None) -> KnowledgeGraph:
        """The graph induced by the entities where ``entity_mask`` is True (triples inside it only)."""
        keep = torch.nonzero(entity_mask).flatten()
        new_index = torch.full((self.num_entities,), -1, dtype=torch.long)
        new_index[keep] = torch.arange(keep.numel())
        t = self.triples
        inside = entity_mask[t[:, 0]] & entity_mask[t[:, 2]] if t.numel() else torch.zeros(0, dtype=torch.bool)
        triples = t[inside].clone()
        if triples.numel():
            triples[:, 0], triples[:, 2] = new_index[triples[:, 0]], new_index[triples[:, 2]]
        ids = keep.tolist()
        entities = [(self.entity_ids[i], self.entity_names[i], self.entity_descriptions[i]) for i in ids]
        relations = list(zip(self.relation_ids, self.relation_names, self.relation_descriptions))
        cats = {self.entity_ids[i]: self.entity_categories[i] for i in ids
                if self.entity_categories and self.entity_categories[i] is not None}
        return KnowledgeGraph.build(entities, relations, triples, categories=cats or None,
                                    source=source or f"{self.source}[subgraph]")

    def to_dgl(self):
        """A ``dgl.DGLGraph`` (optional extra ``dgl``): see :mod:`kadapt.kg.dgl_interop`."""
        from kadapt.kg.dgl_interop import TEXT_FIELDS, build_dgl

        return build_dgl(self.triples, self.num_entities, {key: getattr(self, key) for key in TEXT_FIELDS})

    @classmethod
    def from_dgl(cls, graph, **kwargs) -> KnowledgeGraph:
        """Build from a ``dgl.DGLGraph``; kwargs: ``relation_key``, ``entity_ids``, ``relation_ids``, ``source``."""
        from kadapt.kg.dgl_interop import dgl_parts

        return cls.build(**dgl_parts(graph, **kwargs))


def _texts(items, stat_key: str, stats: dict[str, int]) -> tuple[list[str], list[str]]:
    names, descriptions = [], []
    missing = 0
    for ident, name, description in items:
        name = (name or "").strip() or str(ident)
        description = (description or "").strip()
        if not description:
            missing += 1
            description = name
        names.append(name)
        descriptions.append(description)
    stats[stat_key] = missing
    return names, descriptions


def _with_mention(name: str, description: str) -> str:
    """The description text with the mention first, as in KG-BERT's ``"lemma, gloss"`` lines."""
    if description == name or description.lower().startswith(name.lower()):
        return description
    return f"{name}, {description}"


def _build_csr(triples: torch.Tensor, num_nodes: int, num_relations: int, inverse: bool) -> CSR:
    if triples.numel():
        src, rel, dst = triples[:, 0], triples[:, 1], triples[:, 2]
        if inverse:
            src, dst, rel = torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([rel, rel + num_relations])
    else:
        src = dst = rel = torch.zeros(0, dtype=torch.long)
    order = torch.argsort(src * (num_nodes + 1) + dst, stable=True)
    src, dst, rel = src[order], dst[order], rel[order]
    counts = torch.bincount(src, minlength=num_nodes)
    indptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(counts, 0)
    return CSR(indptr, dst.contiguous(), rel.contiguous())
