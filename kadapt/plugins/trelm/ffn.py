"""Where a backbone keeps its FFN blocks: a small registry by ``model_type``.

TRELM's knowledge path runs through each layer's FFN: input matrix (hidden → intermediate), the
activation, output matrix (intermediate → hidden). For BERT-family encoders these are
``encoder.layer[i].intermediate.dense``, ``encoder.layer[i].intermediate`` (its output is the
post-activation intermediate state) and ``encoder.layer[i].output.dense``.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from kadapt.core.errors import KadaptError


@dataclass(frozen=True)
class FFNBlock:
    """The three modules of one layer's FFN."""

    input_linear: nn.Linear  # hidden -> intermediate; rows = intermediate neurons
    activation_module: nn.Module  # its forward output is the post-activation intermediate state
    output_linear: nn.Linear  # intermediate -> hidden; columns = intermediate neurons


def _bert_style(model: nn.Module) -> list[FFNBlock]:
    return [FFNBlock(layer.intermediate.dense, layer.intermediate, layer.output.dense)
            for layer in model.encoder.layer]


FFN_LOCATORS = {
    "bert": _bert_style,
    "roberta": _bert_style,
    "xlm-roberta": _bert_style,
    "camembert": _bert_style,
    "electra": _bert_style,
}


def ffn_blocks(model: nn.Module) -> list[FFNBlock]:
    """The FFN blocks of ``model`` (a HF encoder), one per layer, bottom to top."""
    model_type = model.config.model_type
    try:
        locate = FFN_LOCATORS[model_type]
    except KeyError:
        raise KadaptError(
            f"TRELM does not know where the FFN layers of model_type {model_type!r} are; "
            f"supported: {sorted(FFN_LOCATORS)} (add a locator to kadapt.plugins.trelm.ffn.FFN_LOCATORS)"
        ) from None
    return locate(model)
