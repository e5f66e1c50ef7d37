"""Where a backbone keeps its FFN blocks: read from the architecture registry (kadapt.core.architectures).

TRELM's knowledge path runs through each layer's FFN: input matrix (hidden → intermediate), the
activation, output matrix (intermediate → hidden). For BERT-family encoders these are
``encoder.layer[i].intermediate.dense``, ``encoder.layer[i].intermediate`` (its output is the
post-activation intermediate state) and ``encoder.layer[i].output.dense``; DistilBERT's ``ffn.lin1`` /
``ffn.activation`` / ``ffn.lin2``; unshared ALBERT's ``ffn`` / ``activation`` / ``ffn_output``.
"""
from __future__ import annotations

from torch import nn

from kadapt.core.architectures import FFNBlock, architecture, refusal
from kadapt.core.errors import ArchitectureError

__all__ = ["FFNBlock", "ffn_blocks"]


def ffn_blocks(model: nn.Module) -> list[FFNBlock]:
    """The FFN blocks of ``model`` (a HF encoder), one per layer, bottom to top."""
    reason = refusal(model, "ffn")
    if reason is not None:
        raise ArchitectureError(f"TRELM needs per-layer FFN blocks, which model_type {model.config.model_type!r} "
                                f"cannot offer exactly: {reason}")
    return architecture(model.config.model_type).ffn_blocks(model)
