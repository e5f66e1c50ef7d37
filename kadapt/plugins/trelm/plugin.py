"""The TRELM plug-in (Yan et al., TRELM §3): an INSIDE plug-in that changes the backbone pass.

It holds a :class:`SparseFFNDelta` on the knowledge-path neurons of every FFN layer and runs the
backbone itself with the deltas hooked in (``forward(pass_)`` → ``inside_features``). During infusion it also

* picks the important entity mentions of a batch by semantic importance (eq. 1) — SI(e) =
  ‖h_o‖·‖h_rep‖ / (h_o·h_rep), the inverse cosine between the mean-pooled frozen-backbone states of the
  sentence and of the sentence with the subject replaced by the mask token; the ``important_fraction``
  of the batch with the highest SI are important;
* mixes the memory bank into the input embeddings of those subjects (eq. 7, λ decaying per epoch,
  eq. 8) and updates the bank from its own outputs (eq. 4–6); with ``inject_long_tail`` the same for the
  long-tail words of the sentence (§3.4 "Input"; :mod:`long_tail`, a word table of its own);
* recomputes the knowledge path by attributing the objective's knowledge probability (eq. 9–12):
  ``routing: per_batch`` (the paper: every optimizer step, on that step's batch) or ``periodic`` (every
  ``reselect_every`` steps); ``attribution: ig`` (eq. 11, m = ``ig_steps``) or ``grad_x_act`` (the
  one-pass first-order proxy, = IG with m = 1). No selection happens before ``routing_warmup_steps``
  when the MLM read-out is new (a backbone without its own MLM head): attribution through an untrained
  read-out is noise. Each newly selected neuron starts Adam afresh (:mod:`fresh_adam`).

At fine-tuning (eval mode) only the deltas act: no memory, no SI, no re-selection.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from accelerate.optimizer import AcceleratedOptimizer

from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import KadaptError
from kadapt.core.plugin import Pass, Plugin, PluginConfig, StepInfo
from kadapt.plugins.trelm.attribution import gradient_x_activation, integrated_gradients, select_neurons
from kadapt.plugins.trelm.fresh_adam import FreshNeuronAdam
from kadapt.plugins.trelm.knowledge import KGInjection, injection_embedding
from kadapt.plugins.trelm.long_tail import IGNORE, WordCounts, WordSpans, mix_words, span_means, word_spans
from kadapt.kg.readers import read_kg
from kadapt.plugins.trelm.mask_adapter import SparseFFNDelta
from kadapt.plugins.trelm.objective import TRELMKnowledgeObjective
from kadapt.plugins.trelm.memory_bank import (
    KnowledgeMemoryBank,
    memory_lambda,
    window_mean,
)

log = logging.getLogger(__name__)


@dataclass
class TRELMConfig(PluginConfig):
    """TRELM hyper-parameters; defaults follow the paper where it gives a value."""

    name: str = field(default="trelm", metadata={"help": "Plug-in name."})
    neurons_per_layer: tuple[int, ...] = field(
        default=(128,),
        metadata={"help": "Knowledge-path neurons per FFN layer: one count for every layer, or one per layer "
                          "(0 = leave that layer untouched). Fixed for the run; re-selection swaps which neurons."})
    ig_steps: int = field(default=20, metadata={"help": "m, Riemann steps of the integrated gradients (eq. 11; paper: 20)."})
    routing: str = field(default="per_batch", metadata={
        "help": "per_batch (paper: the knowledge path of every batch, re-selected each optimizer step) | "
                "periodic (every reselect_every steps)."})
    attribution: str = field(default="ig", metadata={
        "help": "ig (paper: integrated gradients with ig_steps points, one m-copy pass per layer) | grad_x_act "
                "(first-order proxy v·dP/dv = IG with m=1, every layer from one pass; ~m×L cheaper)."})
    reselect_every: int = field(default=100, metadata={"help": "routing: periodic only — recompute the knowledge path "
                                                                 "every N optimizer steps (0 = select once)."})
    routing_warmup_steps: int = field(default=50, metadata={
        "help": "No selection before this optimizer step when the MLM read-out is new (backbone without an MLM "
                "head); 0 with a backbone MLM head. Not in the paper (its backbones have MLM heads)."})
    attribution_rows: int = field(default=8, metadata={"help": "Batch rows used for attribution (the m copies of them run as one batch)."})
    memory_slots: int = field(default=16384, metadata={"help": "Rows of the entity memory table (entities hashed into them)."})
    memory_window: int = field(default=16, metadata={"help": "k, half window of the local memory (eq. 4; paper best: 16)."})
    memory_gamma: float = field(default=0.1, metadata={"help": "γ, moving-average factor of the local memory (eq. 5)."})
    memory_lambda: float = field(default=0.5, metadata={"help": "λ, initial weight of the memory in the input (eq. 7; paper: 0.5)."})
    memory_beta: float = field(default=2.0, metadata={"help": "β, λ decays as λ/β^epoch (eq. 8; paper best: 2)."})
    important_fraction: float = field(default=0.5, metadata={"help": "Share of a batch's subject mentions with the highest SI (eq. 1) that get memory."})
    inject_kg: str = field(default="", metadata={
        "help": "KG folder (any kadapt KG layout) whose entity/relation texts, encoded once by the frozen backbone, "
                "give h_e of eq. 7 at important entity tokens. Paper: KG embeddings; '' = no KG (h_e = E_p)."})
    inject_si_targets: bool = field(default=True, metadata={
        "help": "CKA loss only at the target entities of the rows SI (eq. 1) marks important (paper: SI chooses "
                "the target entities); false = at every row's target."})
    inject_long_tail: bool = field(default=True, metadata={
        "help": "Long-tail words enter the memory bank (paper §3.4 'Input'): a word counted at most long_tail_max_count "
                "times over the corpus (counted in the first epoch) is mixed by eq. 7 (h = E_p) and updated by eq. 4-6 "
                "like an important entity, in a memory table of its own; false = entities only."})
    long_tail_max_count: int = field(default=10, metadata={
        "help": "A word is long-tail when it occurs at most this many times in the corpus (not given in the paper)."})
    inject_kg_format: str = field(default="auto", metadata={"help": "Format of inject_kg (auto, kgbert, codex, ...)."})
    inject_entity: bool = field(default=True, metadata={"help": "With inject_kg: the KG entity vector enters h_e (paper)."})
    inject_relation: bool = field(default=True, metadata={
        "help": "With inject_kg: the sentence relation's KG vector enters h_e (paper: head entity and relation at the input)."})

    def counts(self, num_layers: int) -> list[int]:
        if len(self.neurons_per_layer) == 1:
            return [self.neurons_per_layer[0]] * num_layers
        if len(self.neurons_per_layer) != num_layers:
            raise KadaptError(f"neurons_per_layer has {len(self.neurons_per_layer)} counts for a {num_layers}-layer backbone")
        return list(self.neurons_per_layer)


class TRELMPlugin(Plugin):
    """Inside plug-in: sparse FFN deltas on attributed neurons, applied in its own backbone pass."""

    kind = "trelm"
    placement = "inside"
    backbone_needs = ("layers", "ffn")
    reads_shared_states_only = False  # its output depends on its own pass, not only on shared states
    config_class = TRELMConfig

    def __init__(self, config: TRELMConfig, spec: BackboneSpec):
        super().__init__(config, spec)
        if not 0.0 <= config.important_fraction <= 1.0:
            raise KadaptError(f"important_fraction must lie in [0, 1], got {config.important_fraction}")
        if config.memory_beta < 1.0 or config.memory_lambda < 0.0 or config.memory_lambda > 1.0:
            raise KadaptError(f"memory_lambda must lie in [0, 1] and memory_beta be >= 1 (λ decays as λ/β^epoch), "
                              f"got λ={config.memory_lambda}, β={config.memory_beta}")
        if config.ig_steps < 1:
            raise KadaptError(f"trelm config: ig_steps must be >= 1 (m Riemann points of eq. 11; for the one-pass "
                              f"proxy set attribution: grad_x_act), got {config.ig_steps}")
        if config.inject_kg and config.important_fraction == 0:
            raise KadaptError("trelm config: inject_kg is set but important_fraction is 0: no entity position would "
                              "receive knowledge (raise important_fraction or drop inject_kg)")
        if config.routing not in ("per_batch", "periodic"):
            raise KadaptError(f"trelm config: routing must be per_batch or periodic, got {config.routing!r}")
        if config.attribution not in ("ig", "grad_x_act"):
            raise KadaptError(f"trelm config: attribution must be ig or grad_x_act, got {config.attribution!r}")
        if config.routing_warmup_steps < 0 or config.reselect_every < 0:
            raise KadaptError(f"trelm config: routing_warmup_steps and reselect_every must be >= 0, got "
                              f"{config.routing_warmup_steps} and {config.reselect_every}")
        if config.long_tail_max_count < 1:
            raise KadaptError(f"trelm config: long_tail_max_count must be >= 1 (occurrences in the corpus), got "
                              f"{config.long_tail_max_count}")
        if config.memory_window < 0:
            raise KadaptError(f"memory_window must be >= 0, got {config.memory_window}")
        counts = config.counts(spec.num_layers)
        if not any(counts):
            raise KadaptError(f"trelm config: neurons_per_layer selects no neuron in any layer ({list(config.neurons_per_layer)}):"
                              f" the knowledge path would be empty and the plug-in would train nothing"
                              f"{' (the injected knowledge would reach no trainable weight)' if config.inject_kg else ''}")
        self.delta = SparseFFNDelta(spec.hidden_size, spec.intermediate_size, counts)
        self.memory = KnowledgeMemoryBank(config.memory_slots, spec.hidden_size, config.memory_gamma)
        self.fresh = FreshNeuronAdam(self.delta)
        # long-tail words: a memory table of their own and exact corpus counts (first epoch)
        self.word_memory = (KnowledgeMemoryBank(config.memory_slots, spec.hidden_size, config.memory_gamma)
                            if config.inject_long_tail else None)
        self.word_counts = WordCounts()
        self.long_tail_stats = {"word_occurrences_mixed": 0}
        self.injection: KGInjection | None = None  # built from inject_kg at the first training pass
        self.injection_stats = {"batches_without_important_entity": 0}
        self.register_buffer("selections", torch.zeros((), dtype=torch.long))  # re-selections done
        self.epoch = 0
        self.selection_log: list[dict] = []

    # ------------------------------------------------------------------ contract
    def required_layers(self) -> tuple[int, ...]:
        return ()  # reads no state of the shared pass: it runs its own

    @property
    def output_size(self) -> int:
        return self.spec.hidden_size

    def forward(self, pass_: Pass) -> torch.Tensor:
        """Its own backbone pass with the deltas hooked in; the shared pass's last state (the unmodified
        sentence) serves the semantic-importance score."""
        return self.inside_features(pass_.backbone, pass_.input_ids, pass_.attention_mask, pass_.batch,
                                    plain_last=pass_.last)

    def card_notes(self) -> list[str]:
        counts = self.delta.counts
        return [
            (f"sparse FFN delta on {sum(counts)} knowledge-path neurons ({counts} per layer) of the frozen "
             "backbone; stored as neuron indices + values; the backbone weights are never changed"),
            (f"knowledge path selected {int(self.selections)} time(s) ({self.config.routing} routing, "
             f"{self.config.attribution} attribution, m={self.config.ig_steps})"),
            *([f"KG injection from {self.config.inject_kg} (entity: {self.config.inject_entity}, relation: "
               f"{self.config.inject_relation}); important mentions without a KG row: "
               f"{self.injection.skipped_entities if self.injection is not None else 0}; batches without an "
               f"important entity: {self.injection_stats['batches_without_important_entity']}"]
              if self.config.inject_kg else []),
            *([f"long-tail words in the memory bank (at most {self.config.long_tail_max_count} occurrences in the "
               f"corpus): {len(self.word_counts.counts)} distinct words counted, "
               f"{int(self.word_memory.seen.sum())} word memory slots filled"] if self.word_memory is not None else []),
        ]

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The memory bank's seen slots (sparse): ``memory.safetensors`` and training checkpoints."""
        words = {}
        if self.word_memory is not None:
            words = {**{f"word_{k}": v for k, v in self.word_memory.tensors().items()}, **self.word_counts.tensors()}
        return {**self.memory.tensors(), **self.fresh.tensors(), **words}

    def load_extra_tensors(self, tensors) -> None:
        tensors = dict(tensors)
        self.memory.load_tensors(tensors)
        self.fresh.load_tensors(tensors)
        if self.word_memory is not None and "word_slots" in tensors:  # folders written before long-tail words: none
            self.word_memory.load_tensors({k[len("word_"):]: v for k, v in tensors.items() if k.startswith("word_")})
            self.word_counts.load_tensors(tensors)

    @property
    def current_lambda(self) -> float:
        return memory_lambda(self.config.memory_lambda, self.config.memory_beta, self.epoch)

    # ------------------------------------------------------------------ the pass
    def inside_features(self, backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        batch: dict | None = None, plain_last: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden state of the backbone run with the deltas (B, S, H); with autograd.

        ``plain_last``: the unmodified backbone's last states of the same batch, when the caller has
        them (saves the original-sentence pass of the semantic-importance score)."""
        hidden = backbone.embed(input_ids, attention_mask=attention_mask)
        use_memory = (self.training and batch is not None and "subj_key" in batch
                      and (self.current_lambda > 0 or bool(self.config.inject_kg) or self.config.inject_si_targets))
        words = None
        if use_memory:
            hidden, initial = self._mix_memory(backbone, input_ids, attention_mask, hidden, batch, plain_last)
            hidden, words = self._mix_long_tail(hidden, batch)
        with self.delta.installed(backbone.model):
            out = backbone.run_layers(hidden, 0, backbone.spec.num_layers, attention_mask)
        if use_memory:
            context = window_mean(out.detach(), attention_mask, batch["subj_start"], batch["subj_end"],
                                  self.config.memory_window)
            self.memory.update(batch["subj_key"], context, out.detach()[:, 0], initial)
            if words is not None:
                self._update_long_tail(out.detach(), attention_mask, *words)
        return out

    def _mix_long_tail(self, hidden: torch.Tensor, batch: dict) -> tuple[torch.Tensor, tuple | None]:
        """Count the batch's words (first epoch) and mix the memory into its usable long-tail words
        (``long_tail.py``); returns the mixed input and (spans, initial) for the update after the pass."""
        if self.word_memory is None or "word_keys" not in batch:
            return hidden, None
        spans = word_spans(batch["word_ids"], batch["word_keys"])
        if self.epoch == 0:
            self.word_counts.observe(spans.keys)
        blocked = self._subject_mask(batch, hidden.shape[1]) | (batch["cka_labels"] != IGNORE)
        if "mlm_labels" in batch:
            blocked |= batch["mlm_labels"] != IGNORE
        index = spans.token_mask(hidden.shape[:2])
        hit = index[blocked & (index >= 0)]
        usable = torch.ones(len(spans), dtype=torch.bool, device=hidden.device)
        usable[hit] = False
        chosen = spans.select(usable & (self.word_counts.of(spans.keys) <= self.config.long_tail_max_count))
        initial = span_means(hidden.detach(), chosen)
        local, glob = self.word_memory.lookup(chosen.keys, initial)
        self.long_tail_stats["word_occurrences_mixed"] += len(chosen)
        return mix_words(hidden, chosen, local, glob, self.current_lambda), (chosen, initial)

    def _update_long_tail(self, out: torch.Tensor, attention_mask: torch.Tensor, spans: WordSpans,
                          initial: torch.Tensor) -> None:
        """Eq. 4–6 for each mixed long-tail word: the ±k window around it and its sentence's [CLS] state."""
        if not len(spans):
            return
        rows = spans.rows
        context = window_mean(out[rows], attention_mask[rows], spans.start, spans.end, self.config.memory_window)
        self.word_memory.update(spans.keys, context, out[rows, 0], initial)

    def _subject_mask(self, batch: dict, length: int) -> torch.Tensor:
        positions = torch.arange(length, device=batch["subj_start"].device)[None, :]
        return (positions >= batch["subj_start"][:, None]) & (positions < batch["subj_end"][:, None])

    def _mix_memory(self, backbone, input_ids, attention_mask, embedded, batch, plain_last=None):
        subject = self._subject_mask(batch, input_ids.shape[1])
        weights = subject.to(embedded.dtype)[..., None]
        initial = (embedded * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        important = self.important_rows(backbone, input_ids, attention_mask, subject, plain_last)
        if self.config.inject_si_targets:
            batch["si_important"] = important  # the objective's CKA reads it (same batch dict, this step only)
        local, glob = self.memory.lookup(batch["subj_key"], initial)
        lam = self.current_lambda
        mixed = (1 - lam) * self.injected(backbone, embedded, batch, important) + lam / 2 * (local + glob)[:, None, :]
        where = (subject & important[:, None])[..., None]
        return torch.where(where, mixed, embedded), initial

    def injected(self, backbone, embedded: torch.Tensor, batch: dict, important: torch.Tensor) -> torch.Tensor:
        """h_e of eq. 7 per token: KG entity + relation directions at the token's norm (``knowledge.py``);
        the token embeddings themselves without ``inject_kg``."""
        if not self.config.inject_kg:
            return embedded
        if not bool(important.any()):
            self.injection_stats["batches_without_important_entity"] += 1
        if self.injection is None:
            graph = read_kg(self.config.inject_kg, self.config.inject_kg_format)
            self.injection = KGInjection.from_graph(backbone, graph).to(embedded.device)
            log.info("TRELM: injecting %d KG entities / %d relations from %s", graph.num_entities,
                     graph.num_relations, self.config.inject_kg)
        entity = found = relation = None
        if self.config.inject_entity:
            entity, found = self.injection.entity_vectors(batch["subj_key"])
            self.injection.skipped_entities += int((important & ~found).sum())
        if self.config.inject_relation:
            relation = self.injection.relation_vectors(batch["rel_key"])
        return injection_embedding(embedded, entity, found, relation)

    @torch.no_grad()
    def semantic_importance(self, backbone, input_ids, attention_mask, entity_mask,
                            plain_last: torch.Tensor | None = None) -> torch.Tensor:
        """SI (eq. 1) per row: ‖h_o‖·‖h_rep‖ / (h_o·h_rep) on mean-pooled frozen last states
        (``plain_last``, when given, are the original sentence's states)."""
        mask_id = backbone.tokenizer.mask_token_id if backbone.tokenizer is not None else None
        if mask_id is None:
            raise KadaptError("semantic importance needs a tokenizer with a mask token")
        replaced = input_ids.masked_fill(entity_mask, mask_id)
        last = backbone.spec.num_layers
        if plain_last is None:
            plain_last = backbone.encode(input_ids, attention_mask, [last])[last]
        rep_last = backbone.encode(replaced, attention_mask, [last])[last]
        weights = attention_mask.to(rep_last.dtype)[..., None]
        h_o, h_rep = ((h * weights).sum(1) / weights.sum(1).clamp_min(1.0) for h in (plain_last.detach(), rep_last))
        return h_o.norm(dim=-1) * h_rep.norm(dim=-1) / (h_o * h_rep).sum(-1)

    def important_rows(self, backbone, input_ids, attention_mask, entity_mask, plain_last=None) -> torch.Tensor:
        """Bool per row: among the rows whose entity has tokens, the top ``important_fraction`` by SI."""
        has_entity = entity_mask.any(1)
        wanted = round(self.config.important_fraction * int(has_entity.sum()))
        if wanted == 0:
            return torch.zeros_like(has_entity)
        si = self.semantic_importance(backbone, input_ids, attention_mask, entity_mask, plain_last)
        si = si.masked_fill(~has_entity, float("-inf"))
        chosen = torch.zeros_like(has_entity)
        chosen[torch.topk(si, wanted).indices] = True
        return chosen

    # ------------------------------------------------------------------ dynamic routing
    def on_step(self, info: StepInfo) -> None:
        """Before each optimizer step's first forward: the epoch for λ, and the knowledge path of the
        step's batch (per_batch) or every ``reselect_every`` steps (periodic), after the warm-up."""
        self.epoch = info.epoch
        optimizer = _torch_optimizer(info.optimizer)
        if optimizer is not None:  # every step (also warm-up, non-due and resumed ones): the neuron clock runs
            self.fresh.attach(optimizer)
        step, first = info.step, int(self.selections) == 0
        every = self.config.reselect_every
        if self.config.routing == "periodic" and not first and not (every and step % every == 0):
            return
        objective = info.model.head
        if not isinstance(objective, TRELMKnowledgeObjective):
            raise KadaptError(f"trelm: routing attributes the trelm_knowledge objective's knowledge probability; "
                              f"the model's objective is {type(objective).__name__} (objective.name: trelm_knowledge)")
        if not objective.readout_trained and step < self.config.routing_warmup_steps:
            return  # the read-out is new: attribution through it would rank neurons by noise
        self.reselect(info.model.backbone, objective, info.batch,
                      optimizer_state=optimizer.state if optimizer is not None else None, step=step)

    def attribute(self, backbone, objective, rows: dict, target: torch.Tensor) -> list[torch.Tensor]:
        """Scores per FFN layer of the configured attribution (eq. 11, or its one-pass proxy)."""
        def score(hidden, batch):
            return objective.knowledge_probability(hidden, batch)

        with self.delta.installed(backbone.model):
            if self.config.attribution == "grad_x_act":
                return gradient_x_activation(backbone, rows, target, score)
            return integrated_gradients(backbone, rows, target, score, steps=self.config.ig_steps)

    def reselect(self, backbone, objective, batch: dict, *, optimizer_state=None, step: int = 0) -> dict:
        """Attribute on up to ``attribution_rows`` rows of ``batch`` and move the deltas to the top neurons
        of each layer (learned values, optimizer moments and ages of kept neurons survive; new ones start
        at zero with a fresh Adam clock)."""
        rows = {k: v[: self.config.attribution_rows] for k, v in batch.items() if torch.is_tensor(v) and v.ndim}
        labels = rows["cka_labels"]
        target = labels != -100
        if not target.any():
            log.warning("TRELM: no knowledge target in the attribution rows at step %d; selection kept", step)
            return {}
        rows["cka_negatives"] = objective.sample_negatives(labels.clamp_min(0).flatten()).view(*labels.shape, -1)
        scores = self.attribute(backbone, objective, rows, target)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for layer_scores in scores:  # every process must pick the same path: sum their evidence
                torch.distributed.all_reduce(layer_scores)
        chosen = select_neurons(scores, top_k=self.delta.counts)
        old = [self.delta.neurons(layer).clone() for layer in range(self.delta.num_layers)]
        stats = self.delta.reselect(chosen, optimizer_state)
        for layer, new in enumerate(chosen):
            self.fresh.remap(layer, old[layer], new)
        self.selections += 1
        record = {"step": step, "selection": int(self.selections), **stats}
        self.selection_log.append(record)
        level = logging.INFO if self.config.routing == "periodic" or int(self.selections) == 1 else logging.DEBUG
        log.log(level, "TRELM knowledge path #%d at step %d (%s, %s): kept %s, new %s neurons per layer (new ones "
                "start at 0 with a fresh Adam clock)", int(self.selections), step, self.config.routing,
                self.config.attribution, stats["kept"], stats["new"])
        return record


def _torch_optimizer(optimizer):
    """The torch optimizer inside an accelerate wrapper (or the optimizer itself); ``None`` when absent."""
    if isinstance(optimizer, AcceleratedOptimizer):
        optimizer = optimizer.optimizer
    return optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
