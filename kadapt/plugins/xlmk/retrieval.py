"""Using an infused XLM-K plug-in: load it with its heads, embed mentions and descriptions, rank.

* :func:`load_xlmk_model` — backbone + plug-in + the ``xlmk_contrastive`` heads (and queues) from a
  plug-in folder;
* :func:`embed_texts` — first-token states of texts (``[backbone_last ; plug-in]``), optionally through
  a key projection (``W4·ReLU(W3·x)`` descriptions, ``W8·ReLU(W7·x)`` objects), L2-normalised;
* :func:`embed_mentions` — the masked-mention query ``W2·ReLU(W1·x)`` (or the raw state);
* :func:`hits_at_k` — nearest-neighbour Hits@k where row ``i`` of the queries should find column ``i``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.plugins.xlmk.data import MentionExample
from kadapt.core.objective import build_objective
from kadapt.plugins.xlmk.objective import ENTITY_TASK, XLMKObjective
from kadapt.store.plugin_dir import load_plugin


def load_xlmk_model(plugin_dir: str | Path, backbone) -> KnowledgeModel:
    """The saved plug-in with its XLM-K heads and queues restored (strict: every tensor must match)."""
    loaded = load_plugin(plugin_dir, backbone)
    model = KnowledgeModel(backbone, [loaded.plugin])
    spec = next(o for o in loaded.record["objectives"] if o["name"] == XLMKObjective.name)
    head = build_objective(XLMKObjective.name, model.feature_size, spec["config"])
    prefix = f"{XLMKObjective.name}."
    state = {k[len(prefix):]: v for k, v in {**loaded.heads, **loaded.memory}.items()}
    head.load_state_dict(state, strict=True)
    model.head = head
    return model.eval()


@torch.no_grad()
def text_states(model: KnowledgeModel, texts: Sequence[str], max_length: int = 32,
                batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """First-token and mean-pooled ``[backbone_last ; plug-in]`` states of ``texts`` (one pass)."""
    tok = model.backbone.tokenizer
    first, mean = [], []
    for start in range(0, len(texts), batch_size):
        enc = [{"input_ids": tok(t, truncation=True, max_length=max_length)["input_ids"]}
               for t in texts[start:start + batch_size]]
        batch = collate(enc, tok.pad_token_id)
        feats = model.features(batch["input_ids"], batch["attention_mask"])
        mask = batch["attention_mask"][..., None].to(feats.dtype)
        first.append(feats[:, 0])
        mean.append((feats * mask).sum(1) / mask.sum(1))
    empty = torch.zeros(0, model.feature_size)
    return (torch.cat(first), torch.cat(mean)) if first else (empty, empty)


@torch.no_grad()
def project_keys(model: KnowledgeModel, states: torch.Tensor, task: int | None) -> torch.Tensor:
    """L2-normalised ``states`` (``task=None``) or their key projection for ``task``."""
    if task is not None:
        states = model.head.project_keys(task, states)
    return F.normalize(states.float(), dim=-1)


@torch.no_grad()
def embed_texts(model: KnowledgeModel, texts: Sequence[str], *, task: int | None = None, max_length: int = 32,
                batch_size: int = 256, pooling: str = "first") -> torch.Tensor:
    """L2-normalised embeddings of ``texts``: raw features (``task=None``) or the task's key projection."""
    first, mean = text_states(model, texts, max_length, batch_size)
    return project_keys(model, mean if pooling == "mean" else first, task)


@torch.no_grad()
def embed_mentions(model: KnowledgeModel, mentions: Sequence[MentionExample], *, project: bool = True,
                   max_length: int = 48, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised masked-mention queries (``W2·ReLU(W1·x)`` when ``project``, else the state ``x``)."""
    tok, head = model.backbone.tokenizer, model.head
    out = []
    for start in range(0, len(mentions), batch_size):
        feats = [head.encode(m, tok, max_length) for m in mentions[start:start + batch_size]]
        batch = collate(feats, tok.pad_token_id)
        states = model.features(batch["input_ids"], batch["attention_mask"])
        x = states[torch.arange(states.shape[0]), batch["q_pos"]]
        out.append(head.project_queries(ENTITY_TASK, x) if project else x)
    return F.normalize(torch.cat(out).float(), dim=-1)


@torch.no_grad()
def hits_at_k(queries: torch.Tensor, candidates: torch.Tensor, ks: Sequence[int] = (1, 10),
              chunk: int = 1024) -> dict[str, float]:
    """Hits@k of cosine nearest neighbours (inputs normalised); the gold of query ``i`` is candidate ``i``."""
    hits = dict.fromkeys(ks, 0)
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start:start + chunk] @ candidates.T
        gold = scores[torch.arange(scores.shape[0]), torch.arange(start, start + scores.shape[0])]
        rank = (scores > gold[:, None]).sum(1)  # 0 = the gold is the nearest
        for k in ks:
            hits[k] += int((rank < k).sum())
    n = max(1, queries.shape[0])
    return {f"hits@{k}": hits[k] / n for k in ks}
