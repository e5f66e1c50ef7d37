"""The KG a JAKET plug-in reads at fine-tuning time: graph, entity memory, neighbour samplers.

A JAKET plug-in file holds the GAT and merge weights plus ``memory.safetensors`` for the KG it was
infused on, but not the graph itself. Downstream, :func:`attach_kg` gives each JAKET plug-in of a
model a :class:`KGContext` (the infusion KG with its memory, or a new KG whose memory comes from
``kadapt kg-memory`` or is encoded here with the plug-in's LM1). Training samples neighbours with
the plug-in's fan-outs; evaluation reads every neighbour within the GAT's hops (deterministic).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kadapt.core.errors import KadaptError
from kadapt.core.fileio import load_tensors
from kadapt.kg import KnowledgeGraph, NeighborSampler, read_kg
from kadapt.kg.sampler import SampledSubgraph
from kadapt.plugins.jaket.memory import EntityMemory

log = logging.getLogger(__name__)


@dataclass
class KGContext:
    """A KG, its entity/relation memory and the two samplers over it (not saved with the plug-in)."""

    graph: KnowledgeGraph
    memory: EntityMemory
    train_sampler: NeighborSampler
    full_sampler: NeighborSampler
    seed: int = 0
    calls: int = 0

    def subgraph(self, roots: torch.Tensor, training: bool) -> SampledSubgraph:
        """Neighbourhood of the distinct ``roots``: sampled (training) or complete (evaluation)."""
        if training:
            self.calls += 1
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
            return self.train_sampler.sample(roots, gen)
        return self.full_sampler.sample(roots, torch.Generator().manual_seed(0))


def make_context(graph: KnowledgeGraph, memory: EntityMemory, plugin, seed: int = 0) -> KGContext:
    from kadapt.plugins.jaket.pretraining import check_memory

    check_memory(memory, graph, plugin, str(graph.source))
    csr = graph.csr(plugin.config.inverse_relations)
    widest = int(csr.degree().max()) if csr.num_nodes else 0
    hops = len(plugin.config.fanouts)
    return KGContext(graph, memory, NeighborSampler(csr, tuple(plugin.config.fanouts), seed),
                     NeighborSampler(csr, (widest,) * hops, seed), seed)


def load_memory(path: str | Path, plugin) -> EntityMemory:
    tensors, _ = load_tensors(Path(path))
    return EntityMemory.from_tensors(tensors, momentum=plugin.config.memory_momentum,
                                     schedule=tuple(plugin.config.refresh_schedule), source=str(path))


def jaket_plugins(model) -> list:
    return [p for p in model.plugins if p.kind == "jaket"]


def attach_kg(model, kg_dir: str | Path, memory: str | Path | None = None, *, on_error: str = "raise",
              seed: int = 0) -> KnowledgeGraph:
    """Give every JAKET plug-in of ``model`` the KG at ``kg_dir``; ``memory`` = its memory file
    (``kadapt kg-memory``), else LM1 of ``model.backbone`` encodes the descriptions now."""
    plugins = jaket_plugins(model)
    if not plugins:
        raise KadaptError("this task reads a knowledge graph through a JAKET plug-in; the model has none "
                          "(add the JAKET plug-in folder to the recipe's plugins)")
    graph = read_kg(kg_dir, policy=on_error)
    for plugin in plugins:
        plugin.attach_kg(context_for(plugin, model.backbone, graph, memory, seed))
    return graph


def context_for(plugin, backbone, graph: KnowledgeGraph, memory: str | Path | None = None, seed: int = 0) -> KGContext:
    """The :class:`KGContext` of ``graph`` for ``plugin``: memory from the file, else LM1 encodes it."""
    from kadapt.plugins.jaket.pretraining import build_memory

    if memory is not None:
        mem = load_memory(memory, plugin)
    else:
        log.info("encoding %d entity descriptions of %s with LM1", graph.num_entities, graph.source)
        mem = build_memory(backbone, graph, plugin)
    return make_context(graph, mem, plugin, seed)


def single_jaket_plugin(model, task: str):
    """The one JAKET plug-in a KG task reads (clear error for none or several)."""
    plugins = jaket_plugins(model)
    if len(plugins) != 1:
        raise KadaptError(f"{task} reads the KG through exactly one JAKET plug-in; the model has {len(plugins)}")
    return plugins[0]
