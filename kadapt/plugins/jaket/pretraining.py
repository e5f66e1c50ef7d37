"""JAKET infusion: the pre-training model (memory → GAT → merge → LM2 → objectives) and its pipeline.

``JaketPretrainingModel`` has the shape the shared training loop expects (a ``backbone`` attribute
outside the module tree, trainable modules inside, ``forward(batch) -> ObjectiveOutput`` and a
``head`` with ``count``/``summarize``), so infusion gets checkpoints, ``--resume``, metrics and plots
from :func:`kadapt.runs.loop.train`. Per step, the random choices (neighbour sampling, removed mentions,
negatives) come from a generator seeded by (seed, step), so a resumed run draws the same ones.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from kadapt.core.errors import KadaptError
from kadapt.kg import KnowledgeGraph, NeighborSampler
from kadapt.core.model import TrainableModel
from kadapt.core.objective import ObjectiveOutput
from kadapt.plugins.jaket.memory import EntityMemory, encode_descriptions
from kadapt.plugins.jaket.plugin import JaketPlugin
from kadapt.plugins.jaket.pretraining_objective import JaketPretrainingObjective

log = logging.getLogger(__name__)


def build_memory(backbone, graph: KnowledgeGraph, plugin: JaketPlugin, batch_size: int = 256) -> EntityMemory:
    """Eq. 7 for every entity and relation of ``graph`` with LM1 of ``backbone``."""
    entities, relations = encode_graph(backbone, graph, plugin, batch_size)
    cfg = plugin.config
    return EntityMemory(entities, relations, momentum=cfg.memory_momentum, schedule=tuple(cfg.refresh_schedule))


def encode_graph(backbone, graph: KnowledgeGraph, plugin: JaketPlugin, batch_size: int = 256):
    cfg = plugin.config
    entities = encode_descriptions(backbone, graph.entity_texts(), plugin.lm1_layer,
                                   max_length=cfg.description_max_length, batch_size=batch_size)
    relations = encode_descriptions(backbone, graph.relation_texts(cfg.inverse_relations), plugin.lm1_layer,
                                    max_length=cfg.description_max_length, batch_size=batch_size)
    return entities, relations


def check_memory(memory: EntityMemory, graph: KnowledgeGraph, plugin: JaketPlugin, source: str) -> None:
    rel_rows = graph.num_relations * (2 if plugin.config.inverse_relations else 1)
    if memory.num_entities != graph.num_entities or memory.relations.shape[0] != rel_rows:
        raise KadaptError(f"{source}: memory has {memory.num_entities} entities / {memory.relations.shape[0]} relations, "
                          f"the KG {graph.source} needs {graph.num_entities} / {rel_rows}; recompute it with kadapt kg-memory")
    if memory.entities.shape[1] != plugin.spec.hidden_size:
        raise KadaptError(f"{source}: memory width {memory.entities.shape[1]} != backbone hidden {plugin.spec.hidden_size}")


class JaketPretrainingModel(TrainableModel):
    """What JAKET infusion trains: memory → GAT → merge → LM2 → the pre-training objectives."""

    def __init__(self, backbone, plugin: JaketPlugin, head: JaketPretrainingObjective, graph: KnowledgeGraph,
                 memory: EntityMemory, *, seed: int = 0, category_labels: list[str] | None = None):
        super().__init__()
        self.category_labels = category_labels
        object.__setattr__(self, "backbone", backbone)  # frozen, outside the module tree
        backbone.require(plugin.backbone_needs, f"jaket plug-in {plugin.config.name!r}")
        object.__setattr__(self, "graph", graph)
        self.plugin, self.head, self.memory = plugin, head, memory
        check_memory(memory, graph, plugin, "memory")
        self.sampler = NeighborSampler(graph.csr(plugin.config.inverse_relations), plugin.config.fanouts, seed)
        self.seed = seed
        self.register_buffer("categories", graph.category_tensor(category_labels), persistent=False)

    @property
    def plugins(self) -> list[JaketPlugin]:
        return [self.plugin]

    def required_layers(self) -> list[int]:
        return [self.plugin.lm1_layer]

    def _encode_memory(self):
        return encode_graph(self.backbone, self.graph, self.plugin)

    def forward(self, batch: dict) -> ObjectiveOutput:
        if self.training:
            if self.plugin.config.refresh_memory:
                self.memory.tick(self._encode_memory)
            else:
                self.memory.steps += 1
            stream = int(self.memory.steps)
        else:
            stream = -1 - int(batch["head"].sum())
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + stream)
        device = batch["input_ids"].device
        head, tail = batch["head"].cpu(), batch["tail"].cpu()
        roots = torch.unique(torch.cat([head, tail]))
        sub = self.sampler.sample(roots, gen)
        n = sub.num_nodes
        head_node, tail_node = torch.searchsorted(roots, head), torch.searchsorted(roots, tail)
        # the triple's own edge would give its relation away: drop it (both directions)
        pairs = torch.cat([head_node * n + tail_node, tail_node * n + head_node])
        keep = ~torch.isin(sub.edge_index[0] * n + sub.edge_index[1], pairs)
        sub.edge_index, sub.edge_type = sub.edge_index[:, keep], sub.edge_type[keep]
        sub.edge_index, sub.edge_type = sub.edge_index.to(device), sub.edge_type.to(device)
        knowledge = self.plugin.knowledge(self.memory.entities, self.memory.relations, sub)

        masked = torch.rand(head.numel(), 2, generator=gen) < self.head.mask_rate
        if not bool(masked.any()):
            masked[int(torch.randint(head.numel(), (1,), generator=gen)), 0] = True
        masked = masked.to(device)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        pos = torch.arange(ids.shape[1], device=device)[None, :]
        token_entities = torch.full_like(ids, -1)
        mentions = torch.zeros_like(ids, dtype=torch.bool)
        for which, node in ((0, head_node), (1, tail_node)):
            span = "head" if which == 0 else "tail"
            inside = (pos >= batch[f"{span}_start"][:, None]) & (pos <= batch[f"{span}_end"][:, None])
            mentions |= inside
            inside &= ~masked[:, which:which + 1]
            token_entities = torch.where(inside, node.to(device)[:, None], token_entities)
        mlm = {}
        if self.head.mlm_weight > 0:
            ids, mlm = self._mlm_inputs(ids, mask, mentions, gen)
        states = self.backbone.encode(ids, mask, [self.plugin.lm1_layer])
        lm_states = self.plugin.merge_and_run_lm2(states, mask, backbone=self.backbone, token_entities=token_entities,
                                                 knowledge=knowledge)

        rows, which = torch.nonzero(masked, as_tuple=True)
        is_head = which == 0
        start = torch.where(is_head, batch["head_start"][rows], batch["tail_start"][rows])
        end = torch.where(is_head, batch["head_end"][rows], batch["tail_end"][rows])
        true = torch.where(is_head.cpu(), head[rows.cpu()], tail[rows.cpu()])
        candidates = self._candidates(true, gen)
        extra = {
            "knowledge": knowledge, "root_categories": self.categories[roots.to(self.categories.device)].to(device),
            "head_node": head_node.to(device), "tail_node": tail_node.to(device),
            "masked_row": rows, "masked_start": start, "masked_end": end, "candidates": candidates.to(device),
            "candidate_memory": self.memory.entities[candidates.to(self.memory.entities.device)].to(device),
            **mlm,
        }
        return self.head(lm_states, {**batch, **extra})

    def _mlm_inputs(self, ids: torch.Tensor, mask: torch.Tensor, mentions: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        """MLM: ``mlm_rate`` of the real, non-special tokens outside mentions become the mask token;
        their ids are the labels (-100 elsewhere); the decoder is the frozen input embedding matrix."""
        tok = self.backbone.tokenizer
        if tok.mask_token_id is None:
            raise KadaptError(f"mlm_weight > 0 needs a tokenizer with a mask token; {type(tok).__name__} has none")
        special = torch.isin(ids, torch.tensor(tok.all_special_ids, device=ids.device))
        eligible = (mask > 0) & ~special & ~mentions
        chosen = (torch.rand(ids.shape, generator=gen) < self.head.mlm_rate).to(ids.device) & eligible
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        decoder = self.backbone.model.get_input_embeddings().weight.detach()
        return ids.masked_fill(chosen, tok.mask_token_id), {"mlm_labels": labels, "mlm_decoder": decoder}

    def _candidates(self, true: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(M, 1 + neighbours + random): the true entity first, then its neighbours, then random ones."""
        k_nb, k_rand = self.head.neighbour_negatives, self.head.random_negatives
        total = self.memory.num_entities
        neighbours = self.sampler.sample_neighbors(true, k_nb, gen) if k_nb else torch.zeros(true.numel(), 0, dtype=torch.long)
        fill = torch.randint(total, neighbours.shape, generator=gen)
        neighbours = torch.where(neighbours >= 0, neighbours, fill)
        random = torch.randint(total, (true.numel(), k_rand), generator=gen)
        return torch.cat([true[:, None], neighbours, random], 1)


def memory_for_kg(kg_dir: str | Path, backbone, *, plugin_dir: str | Path | None = None, out: str | Path,
                  on_error: str = "raise", batch_size: int = 256) -> dict:
    """Recompute the entity memory for a (new, unseen) KG with LM1 of ``backbone``; write ``out``.

    With ``plugin_dir`` the plug-in's config (LM1 depth, description length, inverse relations) is used
    and its backbone fingerprint is checked; without it, the JAKET defaults. Returns a summary.
    """
    import hashlib

    from kadapt.core.fileio import save_tensors
    from kadapt.kg import read_kg
    from kadapt.store.plugin_dir import FORMAT_VERSION, load_plugin
    from kadapt.core.family import build_plugin

    graph = read_kg(kg_dir, policy=on_error)
    plugin = load_plugin(plugin_dir, backbone, expected_kind="jaket").plugin if plugin_dir else \
        build_plugin("jaket", {}, backbone.spec)
    memory = build_memory(backbone, graph, plugin, batch_size)
    ids_sha = hashlib.sha256("\n".join(graph.entity_ids).encode()).hexdigest()
    meta = {"kind": "jaket", "format_version": str(FORMAT_VERSION), "kg": str(graph.source),
            "entities": str(graph.num_entities), "entity_ids_sha256": ids_sha, "lm1_layers": str(plugin.lm1_layer)}
    save_tensors(out, memory.to_tensors(), meta)
    return {"out": str(out), "entities": graph.num_entities, "relations": int(memory.relations.shape[0]),
            "hidden": int(memory.entities.shape[1]), "lm1_layers": plugin.lm1_layer, "kg_stats": graph.stats}
