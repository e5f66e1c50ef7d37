"""Knowledge-triple injection for TRELM (§3.1, §3.4 "Input"; the h_e of eq. 7).

The paper replaces the embeddings of important entities by KG embeddings and gives the model "a head
entity ... and a relation at the input layer". Here both come from a kadapt KG folder
(:func:`kadapt.kg.readers.read_kg`), encoded ONCE by the frozen backbone: an entity's vector is the
mean of the last-layer states over the content tokens of its description text (name first), a
relation's the same over its name/description. Entities are found by their name with the key of
:func:`entity_key` (the memory bank's key of a mention surface); relations by their id (e.g. ``P19``)
or name, with :func:`entity_key` of that string.

The injection embedding at a token ``p`` of an important entity (what the paper leaves open — how KG
vectors enter the input space — is fixed here as): unit directions summed and rescaled to the token's
own embedding norm,

    h_p = ‖E_p‖ · normalize( normalize(u_e) + normalize(u_r) )

with ``u_e`` the KG entity vector (the token's own ``E_p`` when ``inject_entity`` is off or the entity
has no KG row — a counted skip) and ``u_r`` the relation vector (left out when ``inject_relation`` is off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.plugins.trelm.objective import entity_key


@torch.no_grad()
def encode_texts(backbone, texts: list[str], *, max_length: int = 64, batch_size: int = 128) -> torch.Tensor:
    """(len(texts), H) float32: mean of the frozen last states over each text's content tokens."""
    tok = backbone.tokenizer
    last = backbone.spec.num_layers
    out = torch.empty(len(texts), backbone.spec.hidden_size)
    for lo in range(0, len(texts), batch_size):
        enc = tok(texts[lo:lo + batch_size], truncation=True, max_length=max_length, padding=True,
                  return_special_tokens_mask=True, return_tensors="pt")
        content = ((enc["special_tokens_mask"] == 0) & (enc["attention_mask"] == 1)).float()[..., None]
        states = backbone.encode(enc["input_ids"].to(backbone.device), enc["attention_mask"].to(backbone.device),
                                 [last])[last].float().cpu()
        out[lo:lo + batch_size] = (states * content).sum(1) / content.sum(1).clamp_min(1.0)
    return out


class KGInjection(nn.Module):
    """KG entity and relation vectors keyed like the batch's ``subj_key`` / ``rel_key``."""

    def __init__(self, entity_keys, entities, relation_keys, relations, source: str = "<kg>"):
        super().__init__()
        self.source = source
        self.entity_row = {int(k): i for i, k in enumerate(entity_keys)}
        self.relation_row = {int(k): i for i, k in enumerate(relation_keys)}
        self.register_buffer("entities", entities, persistent=False)
        self.register_buffer("relations", relations, persistent=False)
        self.skipped_entities = 0  # mentions of important entities without a KG row (injected as E_p)

    @classmethod
    def from_graph(cls, backbone, graph) -> "KGInjection":
        if graph.num_entities == 0 or graph.num_relations == 0:
            raise KadaptError(f"{graph.source}: the KG has no entities or no relations to inject")
        entities = encode_texts(backbone, [text for _, text in graph.entity_texts()])
        relations = encode_texts(backbone, [text for _, text in graph.relation_texts(inverse=False)])
        rel_keys, rel_rows = [], []
        for row, (ident, name) in enumerate(zip(graph.relation_ids, graph.relation_names)):
            for label in {ident, name}:  # a sentence's relation label may be the id (P19) or the name
                rel_keys.append(entity_key(label))
                rel_rows.append(row)
        return cls([entity_key(n) for n in graph.entity_names], entities, rel_keys, relations[rel_rows],
                   source=str(graph.source))

    def entity_vectors(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H) KG vector of each row's entity and (B,) bool: whether it has a KG row (zeros where not)."""
        rows = [self.entity_row.get(int(k), -1) for k in keys.tolist()]
        found = torch.tensor([r >= 0 for r in rows], device=self.entities.device)
        picked = self.entities[torch.tensor([max(r, 0) for r in rows], dtype=torch.long, device=self.entities.device)]
        return picked * found[:, None], found

    def relation_vectors(self, keys: torch.Tensor) -> torch.Tensor:
        rows = []
        for key in keys.tolist():
            if int(key) not in self.relation_row:
                raise KadaptError(f"trelm inject_relation: a training sentence's relation (key {int(key)}) is not a "
                                  f"relation of the KG {self.source} (by id or name); use a KG with the sentences' "
                                  f"relations or set inject_relation: false")
            rows.append(self.relation_row[int(key)])
        return self.relations[torch.tensor(rows, device=self.relations.device)]


def injection_embedding(token_embeddings: torch.Tensor, entity: torch.Tensor | None, found: torch.Tensor | None,
                        relation: torch.Tensor | None) -> torch.Tensor:
    """h_p = ‖E_p‖ · normalize(Σ unit directions) per token: ``token_embeddings`` (B, S, H); ``entity`` and
    ``relation`` (B, H) or ``None``; the token's own direction stands in for an entity that is ``None``
    or not ``found`` (B,)."""
    own = F.normalize(token_embeddings, dim=-1)
    if entity is None:
        direction = own
    else:
        direction = torch.where(found[:, None, None], F.normalize(entity, dim=-1)[:, None, :].to(own.dtype), own)
    if relation is not None:
        direction = direction + F.normalize(relation, dim=-1)[:, None, :].to(own.dtype)
    return token_embeddings.norm(dim=-1, keepdim=True) * F.normalize(direction, dim=-1)
