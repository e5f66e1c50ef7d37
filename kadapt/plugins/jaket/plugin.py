"""The JAKET plug-in: composition GAT over the entity memory, merged into LM1 states, then LM2 (eq. 8-10).

LM1 = backbone layers 1..``lm1_layers`` (default: the lower half), LM2 = the rest; both frozen.
At every token of a linked mention the knowledge embedding is added and the sum is layer-normalised
(eq. 8-9); LM2 then runs on the merged states through ``FrozenBackbone.run_layers`` with autograd,
so gradients reach the GAT through the frozen upper layers. The plug-in's output is LM2's output.

Deliberate reading: eq. 9 applies LayerNorm to the merged sequence; here it is applied at mention
tokens only, so every other token enters LM2 exactly as LM1 left it (a text without linked
mentions gives exactly the backbone's output).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.kg.sampler import SampledSubgraph
from kadapt.core.plugin import Pass, Plugin, PluginConfig
from kadapt.plugins.jaket.gat import CompositionGAT


@dataclass
class JaketConfig(PluginConfig):
    """JAKET knowledge-module hyper-parameters; defaults are the paper's."""

    name: str = field(default="jaket", metadata={"help": "Plug-in name."})
    lm1_layers: int | None = field(default=None, metadata={"help": "Backbone layers in LM1 (default: half, 6 of 12 for RoBERTa-base)."})
    gat_layers: int = field(default=2, metadata={"help": "Composition-GAT layers (paper: 2)."})
    gat_heads: int = field(default=8, metadata={"help": "Attention heads per GAT layer (paper: 8)."})
    fanouts: tuple[int, ...] = field(default=(10, 10), metadata={"help": "Neighbours sampled per hop (paper: 10)."})
    inverse_relations: bool = field(default=True, metadata={"help": "Also pass messages along edges read backwards (relation 'inverse of r')."})
    negative_slope: float = field(default=0.2, metadata={"help": "LeakyReLU slope in the attention score (eq. 4)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on attention weights."})
    layer_norm_eps: float = field(default=1e-5, metadata={"help": "Epsilon of the GAT and merge LayerNorms."})
    description_max_length: int = field(default=64, metadata={"help": "Tokens of each description LM1 reads (paper: 64)."})
    memory_momentum: float = field(default=0.8, metadata={"help": "m of the memory momentum update (eq. 12)."})
    refresh_schedule: tuple[int, ...] = field(default=(10, 2, 3, 500), metadata={"help": "(I_init, a, r, I_max) of T(i) (eq. 11)."})
    refresh_memory: bool = field(default=False, metadata={"help": "Re-encode the memory on the T(i) schedule during infusion. "
                                                                  "LM1 is frozen here, so a refresh reproduces the same memory; "
                                                                  "turn on when LM1 has trainable parts."})


class JaketPlugin(Plugin):
    """Re-entrant plug-in: GAT knowledge embeddings added at mentions of LM1 states, then LM2."""

    kind = "jaket"
    placement = "reentrant"
    backbone_needs = ("states", "layers")
    reads_shared_states_only = False  # runs LM2 itself and reads a knowledge graph
    config_class = JaketConfig

    def __init__(self, config: JaketConfig, spec: BackboneSpec):
        super().__init__(config, spec)
        lm1 = config.lm1_layers if config.lm1_layers is not None else spec.num_layers // 2
        if not 1 <= lm1 < spec.num_layers:
            raise PluginFormatError(f"lm1_layers={lm1} must be in 1..{spec.num_layers - 1} for a "
                                    f"{spec.num_layers}-layer backbone")
        if len(config.refresh_schedule) != 4:
            raise PluginFormatError(f"refresh_schedule needs 4 numbers (I_init, a, r, I_max), got {list(config.refresh_schedule)}")
        self.lm1_layer = lm1
        self.gat = CompositionGAT(spec.hidden_size, config.gat_layers, config.gat_heads,
                                  negative_slope=config.negative_slope, dropout=config.dropout, eps=config.layer_norm_eps)
        self.merge_norm = nn.LayerNorm(spec.hidden_size, eps=config.layer_norm_eps)
        object.__setattr__(self, "linking", None)  # set by prepare_run (not saved)

    def required_layers(self) -> tuple[int, ...]:
        return (self.lm1_layer,)

    @property
    def output_size(self) -> int:
        return self.spec.hidden_size

    def card_notes(self) -> list[str]:
        return [
            f"LM1 = backbone layers 1-{self.lm1_layer}, LM2 = layers {self.lm1_layer + 1}-{self.spec.num_layers} (frozen)",
            (f"composition GAT: {self.config.gat_layers} layers x {self.config.gat_heads} heads, "
             f"neighbours sampled per hop {list(self.config.fanouts)}"),
            ("the entity context memory (memory.safetensors) is LM1's description embeddings of the "
             "infusion KG; for another KG recompute it with `kadapt kg-memory KG_DIR --plugin DIR`"),
        ]

    def knowledge(self, entity_memory: torch.Tensor, relation_memory: torch.Tensor,
                  subgraph: SampledSubgraph) -> torch.Tensor:
        """E^KM of the subgraph's nodes (roots first) from their memory rows (E^(0) <- E^context)."""
        x = entity_memory[subgraph.nodes].to(self.merge_norm.weight.dtype)
        if subgraph.edge_type.numel() and int(subgraph.edge_type.max()) >= relation_memory.shape[0]:
            raise KadaptError(f"edge relation {int(subgraph.edge_type.max())} outside the relation memory "
                              f"({relation_memory.shape[0]} rows)")
        return self.gat(x, relation_memory.to(x.dtype), subgraph.edge_index, subgraph.edge_type)

    def merge(self, lm1_states: torch.Tensor, token_entities: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        """Eq. 8-9: LayerNorm(Z_k + E^KM) at mention tokens (``token_entities >= 0``), Z_k elsewhere."""
        linked = token_entities >= 0
        if not bool(linked.any()):
            return lm1_states
        z = lm1_states.to(knowledge.dtype)
        merged = self.merge_norm(z[linked] + knowledge[token_entities[linked]])
        return z.masked_scatter(linked.unsqueeze(-1), merged)

    # ------------------------------------------------------------------ downstream (KnowledgeModel)
    def attach_kg(self, context) -> None:
        """Set the :class:`~kadapt.plugins.jaket.kg_context.KGContext` read downstream (not saved)."""
        object.__setattr__(self, "kg_context", context)

    #: ``prepare_run`` worker, set by the package (``kadapt/plugins/jaket/__init__.py``:
    #: :func:`kadapt.plugins.jaket.text_linking.prepare_text_run`); kept out of this module so that the
    #: plug-in does not import the KG-context / pre-training modules that import it
    run_preparer: ClassVar = None

    def prepare_run(self, options: Mapping, backbone, source: str = "recipe") -> None:
        """``plugin_options.jaket`` of a fine-tuning recipe: attach its KG and link text to it
        (:mod:`kadapt.plugins.jaket.text_linking`). No options: nothing attached (KG tasks attach
        their own in ``bind``)."""
        if options:
            object.__setattr__(self, "linking", type(self).run_preparer(self, options, backbone, source))

    def entity_linking(self):
        """The run's :class:`~kadapt.data.mentions.EntityLinking` (``plugin_options.jaket``), or None."""
        return self.linking

    def require_kg(self):
        context = getattr(self, "kg_context", None)
        if context is None:
            raise KadaptError(f"JAKET plug-in {self.config.name!r} has no knowledge graph attached; text with "
                              "linked mentions needs one (kadapt.plugins.jaket.kg_context.attach_kg)")
        return context

    def entity_embeddings(self, entities: torch.Tensor) -> torch.Tensor:
        """KG-side embeddings (memory + GAT, no LM2) of ``entities`` (global ids of the attached KG)."""
        context = self.require_kg()
        entities = entities.flatten().cpu()
        roots, inverse = torch.unique(entities, return_inverse=True)
        sub = context.subgraph(roots, self.training)
        memory = context.memory
        device = self.merge_norm.weight.device
        sub.edge_index, sub.edge_type = sub.edge_index.to(device), sub.edge_type.to(device)
        return self.knowledge(memory.entities.to(device), memory.relations.to(device), sub)[inverse.to(device)]

    def forward(self, pass_: Pass) -> torch.Tensor:
        """LM2 over LM1 states merged with knowledge at linked mentions.

        ``pass_.batch["token_entities"]`` (B, S): entity id in the attached KG per token, -1 elsewhere.
        Without it (or with no linked token) the result is the backbone's last state, unchanged."""
        backbone, input_ids, attention_mask, states = pass_.backbone, pass_.input_ids, pass_.attention_mask, pass_.states
        token_entities = None if pass_.batch is None else pass_.batch.get("token_entities")
        if token_entities is None or not bool((token_entities >= 0).any()):
            return states[self.spec.num_layers]
        if token_entities.shape != input_ids.shape:
            raise KadaptError(f"token_entities {tuple(token_entities.shape)} must have the shape of input_ids "
                              f"{tuple(input_ids.shape)}")
        context = self.require_kg()
        linked = token_entities >= 0
        if int(token_entities.max()) >= context.graph.num_entities:
            raise KadaptError(f"token_entities names entity {int(token_entities.max())}; the attached KG "
                              f"{context.graph.source} has {context.graph.num_entities}")
        roots = torch.unique(token_entities[linked].cpu())
        sub = context.subgraph(roots, self.training)
        device = input_ids.device
        sub.edge_index, sub.edge_type = sub.edge_index.to(device), sub.edge_type.to(device)
        memory = context.memory
        knowledge = self.knowledge(memory.entities.to(device), memory.relations.to(device), sub)
        rows = torch.searchsorted(roots.to(device), token_entities.clamp(min=0))
        rows = torch.where(linked, rows, torch.full_like(rows, -1))
        return self.merge_and_run_lm2(states, attention_mask, backbone=backbone, token_entities=rows, knowledge=knowledge)

    def merge_and_run_lm2(self, states: Mapping[int, torch.Tensor], attention_mask: torch.Tensor, *, backbone,
                          token_entities: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        """Z^LM = LM2(merge(LM1(x))) (eq. 8-10). ``token_entities``: (B, S) row of ``knowledge`` or -1."""
        merged = self.merge(states[self.lm1_layer], token_entities, knowledge)
        return backbone.run_layers(merged, self.lm1_layer, self.spec.num_layers, attention_mask)
