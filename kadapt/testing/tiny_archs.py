"""Tiny, seeded models of every encoder architecture kadapt supports, built from configs (no downloads).

``TINY_ARCHITECTURES`` names each case (a model type, or a layout of one such as ``electra-small``) and
the config that builds it; ``tiny_model(case)`` returns the seeded ``AutoModel`` in eval mode. Used by the
architecture tests and by ``benchmarks/fallback_cost.py``.
"""
from __future__ import annotations

import torch

_COMMON = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=48, max_position_embeddings=64, pad_token_id=1)


def _configs() -> dict:
    from transformers import (AlbertConfig, BertConfig, CamembertConfig, DebertaConfig, DebertaV2Config,
                              DistilBertConfig, ElectraConfig, MPNetConfig, ModernBertConfig, RobertaConfig,
                              XLMRobertaConfig)

    return {
        "bert": lambda: BertConfig(**_COMMON),
        "roberta": lambda: RobertaConfig(**_COMMON),
        "xlm-roberta": lambda: XLMRobertaConfig(**_COMMON),
        "camembert": lambda: CamembertConfig(**_COMMON),
        "electra": lambda: ElectraConfig(**_COMMON, embedding_size=32),
        "electra-small": lambda: ElectraConfig(**_COMMON, embedding_size=16),  # embeddings_project
        "deberta": lambda: DebertaConfig(**_COMMON, relative_attention=True, max_relative_positions=-1,
                                         pos_att_type=["c2p", "p2c"], position_biased_input=False),
        # the real v3 settings: relative attention with buckets, no absolute positions, layer-normed rel emb
        "deberta-v2": lambda: DebertaV2Config(**_COMMON, relative_attention=True, position_buckets=16,
                                              max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                                              position_biased_input=False, norm_rel_ebd="layer_norm",
                                              share_att_key=True, type_vocab_size=0),
        "distilbert": lambda: DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                               max_position_embeddings=64, pad_token_id=1),
        "albert": lambda: AlbertConfig(**_COMMON, embedding_size=16),  # one shared layer group (real ALBERT)
        "albert-unshared": lambda: AlbertConfig(**_COMMON, embedding_size=16, num_hidden_groups=2),
        "mpnet": lambda: MPNetConfig(**_COMMON),
        "modernbert": lambda: ModernBertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3,
                                               num_attention_heads=4, intermediate_size=48,
                                               max_position_embeddings=64, pad_token_id=1, local_attention=4,
                                               global_attn_every_n_layers=2),
    }


TINY_ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "electra-small", "deberta",
                      "deberta-v2", "distilbert", "albert", "albert-unshared", "mpnet", "modernbert")


def tiny_config(case: str):
    return _configs()[case]()


def tiny_model(case: str, seed: int = 0, attn_implementation: str | None = None):
    """The seeded tiny ``AutoModel`` of ``case`` (eval mode, CPU, fp32)."""
    from transformers import AutoModel

    config = tiny_config(case)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return AutoModel.from_config(config).eval()


def padded_batch(vocab_size: int, pad_token_id: int, *, rows: int = 3, length: int = 9, seed: int = 0):
    """(input_ids, attention_mask): random non-pad ids, every row but the first right-padded."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (rows, length), generator=generator)
    ids[ids == pad_token_id] = 2 if pad_token_id != 2 else 3
    mask = torch.ones(rows, length, dtype=torch.long)
    for row in range(1, rows):
        mask[row, length - 2 * row:] = 0
    return ids.masked_fill(mask == 0, pad_token_id), mask
