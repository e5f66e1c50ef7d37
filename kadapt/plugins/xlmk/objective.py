"""XLM-K's two knowledge tasks as one infusion objective (Jiang et al., 2022, §Methodology).

Every record is one query sequence and one key sequence, both encoded by the same model (frozen
backbone + the plug-in being trained; features ``[backbone_last ; plug-in]``):

* masked entity prediction (``task 0``): the sentence with its mention replaced by the mask token;
  the state at the mask (the mention's first token) → ``z_q = W2·ReLU(W1·x)`` (eq. 1); the entity
  description's first-token state → ``z_+ = W4·ReLU(W3·x)`` (eq. 2);
* object entailment (``task 1``): the subject description's first-token state ``s`` plus the relation
  embedding ``r`` (a lookup table) → ``z_q = W6·ReLU(W5·(s + r))`` (eq. 3); the object description's
  first-token state → ``z_+ = W8·ReLU(W7·x)`` (eq. 4).

Each task's loss is InfoNCE (eq. 5) against the batch's keys of that task plus a FIFO queue of earlier
keys (:class:`~kadapt.plugins.xlmk.contrastive.CandidateQueue`, default 32,768 as the paper's
"32k"); ``L = L_e + L_o``. Defaults are the paper's: the queue starts randomly initialised
(``queue_init: random``; ``empty`` = in-batch candidates only at first), same-entity candidates stay
in the denominator (``mask_same_entity: false``), one direction (``bidirectional: false``; the anchor
code's ``true`` adds the key→query direction with in-batch queries as candidates too). The projections have no bias, as in the equations; ``batch_norm`` adds
the anchor code's BatchNorm layers (under DDP they are per-rank statistics, so N processes then
differ slightly from one). Eq. 5 is a plain dot
product: ``temperature=1, normalize=False`` is the paper; the anchor code offers L2 normalisation and
a temperature, both configurable here. The paper trains the whole encoder with MLM + masked entity
prediction + object entailment; here the backbone is frozen, so the paper's gains are not to be
expected from this plug-in, and forgetting (which MLM guards against there) is moot. The paper's MLM
term is available as ``mlm_weight`` (default 0: off, see README "Deviations"): ``mlm_rate`` of the query
sequence's real tokens (never the masked mention) are replaced by the mask token each training step
and a head tied to the frozen input embeddings (:class:`~kadapt.core.mlm.TiedMLMHead`) predicts them
from the features; ``L = L_e + L_o + mlm_weight · L_MLM``. The same pass serves MEP and MLM, so with
the term on the MEP queries also see the extra masks.

Under DDP the queries, keys and ids are gathered over ranks (no gradient through other ranks'
copies), every rank computes the loss of the whole global batch, and the backward pass is scaled so
that DDP's gradient average equals the single-process gradient: N processes reproduce one process
with the same global batch. Gathered keys are enqueued, so the queues stay identical on every rank.
"""
from __future__ import annotations

import torch
from torch import nn

from kadapt.plugins.xlmk.data import MentionExample, TripleExample, stable_hash
from kadapt.core.errors import DataError
from kadapt.core.mlm import IGNORE, TiedMLMHead, choose_masked_positions
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    safe_div,
)
from kadapt.plugins.xlmk.contrastive import (
    QUEUE_INITS,
    CandidateQueue,
    gather_across_ranks,
    info_nce,
    world_size,
)

ENTITY_TASK, OBJECT_TASK = 0, 1
KEY_IDS = "key_input_ids"  # padded with -100 by collate; the mask is built from that


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that uses its running statistics for a training batch of fewer than two rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            False, 0.0, self.eps)
        return super().forward(x)


def projection(size_in: int, hidden: int, size_out: int, batch_norm: bool = False) -> nn.Sequential:
    """``W_b·ReLU(W_a·x)`` without biases (eq. 1–4); with ``batch_norm`` the anchor code's variant
    ``BN(W_b·ReLU(BN(W_a·x)))`` (the last BN without affine), which removes the component that all
    states share — frozen encoders' first-token states are strongly anisotropic."""
    if not batch_norm:
        return nn.Sequential(nn.Linear(size_in, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, size_out, bias=False))
    return nn.Sequential(nn.Linear(size_in, hidden, bias=False), BatchNorm(hidden), nn.ReLU(),
                         nn.Linear(hidden, size_out, bias=False), BatchNorm(size_out, affine=False))


class XLMKObjective(Objective):
    name = "xlmk_contrastive"
    main_metric = "accuracy"

    def __init__(self, feature_size: int, relations: list[str] = (), entity_task: bool = True,
                 object_task: bool = True, projection_size: int | None = None, output_size: int | None = None,
                 queue_size: int = 32768, temperature: float = 1.0, normalize: bool = False,
                 mask_same_entity: bool = False, mask_mention: bool = True, batch_norm: bool = False,
                 queue_init: str = "random", bidirectional: bool = False, mlm_weight: float = 0.0,
                 mlm_rate: float = 0.15, vocab_size: int = 0, hidden_size: int = 0):
        super().__init__(feature_size)
        if mlm_weight < 0 or not 0 < mlm_rate < 1:
            raise ValueError(f"xlmk_contrastive: mlm_weight must be >= 0 and 0 < mlm_rate < 1, got {mlm_weight}, {mlm_rate}")
        if mlm_weight > 0 and (vocab_size <= 0 or hidden_size <= 0):
            raise ValueError("xlmk_contrastive: mlm_weight > 0 needs the backbone's vocab_size and hidden_size "
                             "(recipes fill them in from the backbone)")
        if not (entity_task or object_task):
            raise ValueError("xlmk_contrastive needs entity_task or object_task (or both)")
        if object_task and not relations:
            raise ValueError("xlmk_contrastive: object_task needs a non-empty relation list")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if queue_init not in QUEUE_INITS:
            raise ValueError(f"xlmk_contrastive: queue_init must be one of {list(QUEUE_INITS)}, got {queue_init!r}")
        self.relations = list(relations)
        self.relation_index = {r: i for i, r in enumerate(self.relations)}
        hidden, out = projection_size or feature_size, output_size or feature_size
        self.options = {"relations": self.relations, "entity_task": entity_task, "object_task": object_task,
                        "projection_size": projection_size, "output_size": output_size, "queue_size": queue_size,
                        "temperature": temperature, "normalize": normalize, "mask_same_entity": mask_same_entity,
                        "mask_mention": mask_mention, "batch_norm": batch_norm, "queue_init": queue_init,
                        "bidirectional": bidirectional, "mlm_weight": float(mlm_weight), "mlm_rate": float(mlm_rate),
                        "vocab_size": vocab_size if mlm_weight > 0 else 0,
                        "hidden_size": hidden_size if mlm_weight > 0 else 0}
        self.mlm_head = TiedMLMHead(feature_size, hidden_size, vocab_size) if mlm_weight > 0 else None
        self.tasks = {}
        if entity_task:
            self.mention_proj = projection(feature_size, hidden, out, batch_norm)       # W1, W2
            self.description_proj = projection(feature_size, hidden, out, batch_norm)   # W3, W4
            self.entity_queue = CandidateQueue(queue_size, out, queue_init, seed=ENTITY_TASK)
            self.tasks[ENTITY_TASK] = (self.mention_proj, self.description_proj, self.entity_queue)
        if object_task:
            self.relation_embedding = nn.Embedding(len(self.relations), feature_size)
            nn.init.normal_(self.relation_embedding.weight, std=0.02)
            self.subject_proj = projection(feature_size, hidden, out, batch_norm)       # W5, W6
            self.object_proj = projection(feature_size, hidden, out, batch_norm)        # W7, W8
            self.object_queue = CandidateQueue(queue_size, out, queue_init, seed=OBJECT_TASK)
            self.tasks[OBJECT_TASK] = (self.subject_proj, self.object_proj, self.object_queue)

    @classmethod
    def configure(cls, config: dict, records: list) -> dict:
        """Fill in the relation list and which tasks the training data has."""
        config = dict(config)
        has_triples = any(isinstance(r, TripleExample) for r in records)
        config.setdefault("relations", sorted({r.relation for r in records if isinstance(r, TripleExample)}))
        config.setdefault("entity_task", any(isinstance(r, MentionExample) for r in records))
        config.setdefault("object_task", has_triples)
        return config

    @classmethod
    def configure_for_backbone(cls, config: dict, spec) -> dict:
        """With an MLM term, the vocabulary and hidden size of the backbone its head is tied to."""
        config = dict(config)
        if config.get("mlm_weight", 0) > 0:
            config.setdefault("vocab_size", spec.vocab_size)
            config.setdefault("hidden_size", spec.hidden_size)
        return config

    # ------------------------------------------------------------------ encoding
    def encode(self, record, tokenizer, max_length: int) -> dict:
        if isinstance(record, MentionExample):
            if ENTITY_TASK not in self.tasks:
                raise DataError(record.source, None, "a mention record, but this objective has no entity task")
            query, q_pos = self._masked_sentence(record, tokenizer, max_length)
            key, key_entity, relation = record.description, record.entity, 0
        elif isinstance(record, TripleExample):
            if OBJECT_TASK not in self.tasks:
                raise DataError(record.source, None, "a triple record, but this objective has no object task")
            if record.relation not in self.relation_index:
                raise DataError(record.source, None, f"relation {record.relation!r} unseen in training "
                                f"({len(self.relations)} known relations)")
            query = tokenizer(record.subject_text, truncation=True, max_length=max_length)["input_ids"]
            q_pos, key, key_entity, relation = 0, record.object_text, record.object, self.relation_index[record.relation]
        else:
            raise DataError(getattr(record, "source", "<record>"), None,
                            f"xlmk_contrastive reads MentionExample/TripleExample records, got {type(record).__name__}")
        key_ids = tokenizer(key, truncation=True, max_length=max_length)["input_ids"]
        return {"input_ids": query, "q_pos": q_pos, KEY_IDS: key_ids, "relation": relation,
                "task": OBJECT_TASK if isinstance(record, TripleExample) else ENTITY_TASK,
                "key_entity": stable_hash(key_entity)}

    def _masked_sentence(self, record: MentionExample, tokenizer, max_length: int) -> tuple[list[int], int]:
        start, end = record.span
        if self.options["mask_mention"]:
            if tokenizer.mask_token is None:
                raise DataError(record.source, None, "the tokenizer has no mask token to mask the mention with")
            text = record.text[:start] + tokenizer.mask_token + record.text[end:]
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            if tokenizer.mask_token_id not in ids:
                raise DataError(record.source, None, f"mention cut off by max_length={max_length}")
            return ids, ids.index(tokenizer.mask_token_id)
        enc = tokenizer(record.text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        for i, (a, b) in enumerate(enc["offset_mapping"]):
            if b > start and a < end and b > a:
                return enc["input_ids"], i
        raise DataError(record.source, None, f"mention cut off by max_length={max_length}")

    # ------------------------------------------------------------------ forward
    def encode_pair(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """First-token (query position) states of the query sequences and the key sequences."""
        queries, keys, _ = self._encode_pair(model, batch, batch["input_ids"])
        return queries, keys

    def _encode_pair(self, model, batch: dict, input_ids: torch.Tensor):
        feats = model.features(input_ids, batch["attention_mask"])
        rows = torch.arange(feats.shape[0], device=feats.device)
        queries = feats[rows, batch["q_pos"]]
        key_ids = batch[KEY_IDS]
        mask = key_ids.ne(-100)
        pad = model.backbone.model.config.pad_token_id or 0
        keys = model.features(key_ids.masked_fill(~mask, pad), mask.long())[:, 0]
        return queries, keys, feats

    def _mlm_inputs(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The query ids with this step's MLM positions masked, and their labels (None: no MLM term)."""
        ids = batch["input_ids"]
        if self.mlm_head is None or not self.training:
            return ids, None
        tokenizer = model.backbone.tokenizer
        rows = torch.arange(ids.shape[0], device=ids.device)
        query_token = torch.zeros_like(ids, dtype=torch.bool)
        query_token[rows, batch["q_pos"]] = True
        chosen = choose_masked_positions(ids, batch["attention_mask"], self.options["mlm_rate"],
                                         tokenizer.all_special_ids, keep=query_token)
        return ids.masked_fill(chosen, tokenizer.mask_token_id), ids.masked_fill(~chosen, IGNORE)

    def _mlm_loss(self, model, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        at = labels != IGNORE
        if not bool(at.any()):
            return feats.sum() * 0.0
        logits = self.mlm_head(feats[at], model.backbone.model.get_input_embeddings().weight)
        return self.options["mlm_weight"] * nn.functional.cross_entropy(logits.float(), labels[at])

    def project_queries(self, task: int, states: torch.Tensor, relation: torch.Tensor | None = None) -> torch.Tensor:
        query_proj = self.tasks[task][0]
        if task == OBJECT_TASK:
            states = states + self.relation_embedding(relation).to(states.dtype)
        return query_proj(states)

    def project_keys(self, task: int, states: torch.Tensor) -> torch.Tensor:
        return self.tasks[task][1](states)

    def step(self, model, batch: dict) -> ObjectiveOutput:
        """Encodes the query sequences and the key (description / object) sequences through ``model``."""
        input_ids, mlm_labels = self._mlm_inputs(model, batch)
        queries, keys, feats = self._encode_pair(model, batch, input_ids)
        n = queries.shape[0]
        logits = torch.full((n, n), float("-inf"), device=queries.device)
        total = queries.new_zeros(())
        for task, (_, _, queue) in self.tasks.items():
            rows = (batch["task"] == task).nonzero().flatten()
            zq = self.project_queries(task, queries[rows], batch["relation"][rows])
            zk = self.project_keys(task, keys[rows])
            ids = batch["key_entity"][rows]
            total = total + self._task_loss(zq, zk, ids, queue)
            with torch.no_grad():
                local = self._scores(zq, zk, ids)
                logits[rows[:, None], rows[None, :]] = local.to(logits.dtype)
        world = world_size() if self.training else 1
        if world > 1:  # every rank holds the global loss; DDP averages W·grad_local → the global gradient
            total = world * total - (world - 1) * total.detach()
        if mlm_labels is not None:  # a local term: DDP's average of local gradients is the batch mean
            total = total + self._mlm_loss(model, feats, mlm_labels)
        return ObjectiveOutput(total, logits)

    def _scores(self, zq: torch.Tensor, zk: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.options["normalize"]:
            zq, zk = nn.functional.normalize(zq, dim=-1), nn.functional.normalize(zk, dim=-1)
        scores = zq @ zk.T / self.options["temperature"]
        if self.options["mask_same_entity"]:
            same = ids[:, None] == ids[None, :]
            same.fill_diagonal_(False)
            scores = scores.masked_fill(same, float("-inf"))
        return scores

    def _task_loss(self, zq: torch.Tensor, zk: torch.Tensor, ids: torch.Tensor, queue: CandidateQueue) -> torch.Tensor:
        # evaluation runs on the main process only: no collective calls there
        gather = gather_across_ranks if self.training else (lambda t: t)
        all_q, all_k, all_ids = gather(zq), gather(zk), gather(ids)
        if all_q.shape[0] == 0:  # no record of this task in the global batch: zero, graph kept for DDP
            return (zq.sum() + zk.sum()) * 0.0
        extra, extra_ids = queue.candidates() if self.training else (None, None)
        loss = info_nce(all_q, all_k, all_ids, extra, extra_ids, temperature=self.options["temperature"],
                        normalize=self.options["normalize"], mask_same_entity=self.options["mask_same_entity"],
                        bidirectional=self.options["bidirectional"])
        if self.training:
            queue.enqueue(all_k.detach().float(), all_ids)
        return loss

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        raise TypeError("xlmk_contrastive encodes its query and key sequences itself: call it through "
                        "KnowledgeModel (step)")

    # ------------------------------------------------------------------ metrics
    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        """In-batch top-1: the positive key scores highest among the batch's keys of the same task."""
        hit = logits.argmax(-1) == torch.arange(logits.shape[0], device=logits.device)
        counts = {}
        for task, label in ((ENTITY_TASK, "entity"), (OBJECT_TASK, "object")):
            rows = batch["task"] == task
            counts[f"{label}_n"] = float(rows.sum())
            counts[f"{label}_correct"] = float((hit & rows).sum())
        return counts

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {
            "accuracy": safe_div(counts["entity_correct"] + counts["object_correct"],
                                 counts["entity_n"] + counts["object_n"]),
            "entity_accuracy": safe_div(counts["entity_correct"], counts["entity_n"]),
            "object_accuracy": safe_div(counts["object_correct"], counts["object_n"]),
        }

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        return logits.argmax(-1).tolist()

    def config_dict(self) -> dict:
        return dict(self.options)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The candidate queues (buffers) — written to ``memory.safetensors``, not to the heads file."""
        return {k: v for k, v in self.state_dict().items() if "_queue." in k}
