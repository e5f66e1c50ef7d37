"""What kadapt knows about each encoder architecture, in ONE place: a registry keyed by ``model_type``.

For each supported architecture an :class:`Architecture` says how to embed (hidden state 0, exactly as
the model's own forward builds it: ELECTRA's ``embeddings_project``, ALBERT's embedding mapping,
DeBERTa's mask-scaled embeddings), how to run transformer layers ``start..end`` one by one with the
inputs each layer needs (the model's mask format, DeBERTa's relative embeddings and positions, MPNet's
relative position bias, ModernBERT's sliding-window mask and rotary positions), where each layer's FFN
input/output weights are (TRELM's knowledge path) and how wide the FFN is.

A family needs some of three capabilities (``Plugin.backbone_needs``):

* ``states``  — hidden states read from a backbone pass: every encoder (a model_type outside the
  registry uses one full forward with ``output_hidden_states``: correct, slower);
* ``layers``  — layers run one by one from any state (JAKET's LM2, TRELM's own pass);
* ``ffn``     — per-layer FFN blocks (TRELM).

:func:`refusal` answers, for a model and a capability, ``None`` (supported) or the one-line reason.
Probing HF modules (``getattr``) is this module's job and happens only here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: capabilities a family may need from a backbone, and what the README table calls them
CAPABILITIES = ("states", "layers", "ffn")


@dataclass(frozen=True)
class FFNBlock:
    """The three modules of one layer's FFN."""

    input_linear: nn.Linear  # hidden -> intermediate; rows = intermediate neurons
    activation_module: nn.Module  # its forward output is the post-activation intermediate state
    output_linear: nn.Linear  # intermediate -> hidden; columns = intermediate neurons


class Architecture:
    """How kadapt runs one encoder family. Subclasses override what differs from BERT."""

    #: the model types this runner serves
    model_types: tuple[str, ...] = ()
    #: whether the embeddings take ``token_type_ids``
    token_type_ids: bool = True
    #: for the README table: a note on the layered path / FFN support ("" = plainly supported)
    layers_note: str = ""
    ffn_note: str = ""

    # ---------------------------------------------------------------- sizes
    def ffn_width(self, config) -> int:
        return config.intermediate_size

    # ---------------------------------------------------------------- the layered path
    def layers_refusal(self, model: nn.Module) -> str | None:
        """Why layers of ``model`` cannot run one by one (``None``: they can)."""
        return None

    def embed(self, model, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if self.token_type_ids else {}
        return model.embeddings(input_ids=input_ids, **kwargs)

    def context(self, model, attention_mask: torch.Tensor, hidden: torch.Tensor) -> dict:
        """What every layer needs besides the hidden state (mask, positions), built once per pass."""
        return {"mask": _bert_mask(model, attention_mask, hidden)}

    def layers(self, model) -> nn.ModuleList:
        return model.encoder.layer

    def run_layer(self, model, index: int, hidden: torch.Tensor, ctx: dict) -> torch.Tensor:
        """Hidden state ``index + 1`` from hidden state ``index`` (0-based layer ``index``)."""
        return self.layers(model)[index](hidden, attention_mask=ctx["mask"])[0]

    # ---------------------------------------------------------------- the FFN
    def ffn_refusal(self, model: nn.Module) -> str | None:
        return None

    def ffn_blocks(self, model) -> list[FFNBlock]:
        return [FFNBlock(layer.intermediate.dense, layer.intermediate, layer.output.dense)
                for layer in self.layers(model)]


def _bert_mask(model, attention_mask, hidden):
    """The additive mask BERT-like models build (SDPA form when the model uses SDPA)."""
    use_sdpa = (getattr(model, "attn_implementation", None) == "sdpa"
                and getattr(model, "position_embedding_type", "absolute") == "absolute")
    if use_sdpa:
        from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask_for_sdpa

        return _prepare_4d_attention_mask_for_sdpa(attention_mask, hidden.dtype, tgt_len=hidden.shape[1])
    return model.get_extended_attention_mask(attention_mask, hidden.shape[:2], dtype=hidden.dtype)


class BertLike(Architecture):
    model_types = ("bert", "roberta", "xlm-roberta", "camembert")


class Electra(Architecture):
    model_types = ("electra",)
    layers_note = "both layouts (embedding size = or ≠ hidden size)"

    def embed(self, model, input_ids, attention_mask, token_type_ids=None):
        hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        project = getattr(model, "embeddings_project", None)
        return hidden if project is None else project(hidden)


class Deberta(Architecture):
    """DeBERTa v1 and v2/v3: relative embeddings + positions and the model's 2-D → 4-D mask."""

    model_types = ("deberta", "deberta-v2")
    layers_note = "relative attention, mask-scaled embeddings, v2 conv layer"

    def embed(self, model, input_ids, attention_mask, token_type_ids=None):
        return model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)

    def context(self, model, attention_mask, hidden):
        encoder = model.encoder
        return {"mask": encoder.get_attention_mask(attention_mask), "input_mask": attention_mask,
                "relative_pos": encoder.get_rel_pos(hidden), "rel_embeddings": encoder.get_rel_embedding()}

    def run_layer(self, model, index, hidden, ctx):
        out = self.layers(model)[index](hidden, ctx["mask"], relative_pos=ctx["relative_pos"],
                                        rel_embeddings=ctx["rel_embeddings"])[0]
        conv = getattr(model.encoder, "conv", None)
        if index == 0 and conv is not None:  # DeBERTa-v2's conv branch after the first layer
            out = conv(hidden, out, ctx["input_mask"])
        return out


class MPNet(Architecture):
    model_types = ("mpnet",)
    token_type_ids = False
    layers_note = "relative position bias"

    def context(self, model, attention_mask, hidden):
        mask = model.get_extended_attention_mask(attention_mask, hidden.shape[:2])
        return {"mask": mask, "position_bias": model.encoder.compute_position_bias(hidden)}

    def run_layer(self, model, index, hidden, ctx):
        return self.layers(model)[index](hidden, ctx["mask"], None, ctx["position_bias"])[0]


class DistilBert(Architecture):
    model_types = ("distilbert",)
    token_type_ids = False

    def ffn_width(self, config) -> int:
        return config.hidden_dim

    def embed(self, model, input_ids, attention_mask, token_type_ids=None):
        return model.embeddings(input_ids)

    def context(self, model, attention_mask, hidden):
        if model.config._attn_implementation == "sdpa":
            from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask_for_sdpa

            return {"mask": _prepare_4d_attention_mask_for_sdpa(attention_mask, hidden.dtype, tgt_len=hidden.shape[1])}
        return {"mask": attention_mask}

    def layers(self, model):
        return model.transformer.layer

    def run_layer(self, model, index, hidden, ctx):
        return self.layers(model)[index](hidden, attn_mask=ctx["mask"])[-1]

    def ffn_refusal(self, model):
        if model.config._attn_implementation == "flash_attention_2":
            return "flash attention 2 runs unpadded; load it with attn_implementation='sdpa' or 'eager'"
        return None

    def layers_refusal(self, model):
        return self.ffn_refusal(model)

    def ffn_blocks(self, model):
        return [FFNBlock(layer.ffn.lin1, layer.ffn.activation, layer.ffn.lin2) for layer in self.layers(model)]


class Albert(Architecture):
    """ALBERT: embedding mapping to the hidden size; layer i runs its (possibly shared) layer group."""

    model_types = ("albert",)
    ffn_note = "exact with unshared layers; refused when layers share weights (the released ALBERTs)"

    def embed(self, model, input_ids, attention_mask, token_type_ids=None):
        hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return model.encoder.embedding_hidden_mapping_in(hidden)

    def context(self, model, attention_mask, hidden):
        use_sdpa = model.attn_implementation == "sdpa" and model.position_embedding_type == "absolute"
        if use_sdpa:
            from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask_for_sdpa

            return {"mask": _prepare_4d_attention_mask_for_sdpa(attention_mask, hidden.dtype, tgt_len=hidden.shape[1])}
        mask = attention_mask[:, None, None, :].to(hidden.dtype)
        return {"mask": (1.0 - mask) * torch.finfo(hidden.dtype).min}

    def _group(self, model, index: int) -> nn.Module:
        config = model.config
        return model.encoder.albert_layer_groups[int(index / (config.num_hidden_layers / config.num_hidden_groups))]

    def layers(self, model):
        return nn.ModuleList(self._group(model, i) for i in range(model.config.num_hidden_layers))

    def run_layer(self, model, index, hidden, ctx):
        return self._group(model, index)(hidden, ctx["mask"], [None] * model.config.inner_group_num)[0]

    def ffn_refusal(self, model):
        config = model.config
        if config.num_hidden_groups != config.num_hidden_layers or config.inner_group_num != 1:
            return (f"its layers share FFN weights (num_hidden_groups={config.num_hidden_groups}, inner_group_num="
                    f"{config.inner_group_num}, num_hidden_layers={config.num_hidden_layers}); a per-layer "
                    "knowledge path needs one FFN per layer")
        return None

    def ffn_blocks(self, model):
        blocks = []
        for group in self.layers(model):
            layer = group.albert_layers[0]
            blocks.append(FFNBlock(layer.ffn, layer.activation, layer.ffn_output))
        return blocks


class ModernBert(Architecture):
    """ModernBERT (eager / SDPA): global + sliding-window masks and rotary positions per layer."""

    model_types = ("modernbert",)
    token_type_ids = False
    layers_note = "eager/SDPA attention (flash-attention 2 refused); state L is before `final_norm`, as in its `hidden_states`"
    ffn_note = "refused: gated (GLU) FFN"

    def layers_refusal(self, model):
        if model.config._attn_implementation == "flash_attention_2":
            return "flash attention 2 runs unpadded; load it with attn_implementation='sdpa' or 'eager'"
        return None

    def context(self, model, attention_mask, hidden):
        mask, sliding = model._update_attention_mask(attention_mask, output_attentions=False)
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        return {"mask": mask, "sliding": sliding, "positions": positions}

    def layers(self, model):
        return model.layers

    def run_layer(self, model, index, hidden, ctx):
        return self.layers(model)[index](hidden, attention_mask=ctx["mask"], sliding_window_mask=ctx["sliding"],
                                         position_ids=ctx["positions"])[0]

    def ffn_refusal(self, model):
        return "its FFN is gated (GLU: Wi gives input and gate), TRELM's neuron path needs a plain FFN"


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    for model_type in arch.model_types:
        _REGISTRY[model_type] = arch
    return arch


for _arch in (BertLike(), Electra(), Deberta(), MPNet(), DistilBert(), Albert(), ModernBert()):
    register_architecture(_arch)


def architecture(model_type: str) -> Architecture | None:
    """The registered runner for ``model_type`` (``None``: unknown, full-forward path only)."""
    return _REGISTRY.get(model_type)


def supported_model_types() -> list[str]:
    return sorted(_REGISTRY)


def refusal(model: nn.Module, capability: str) -> str | None:
    """``None`` when ``model`` offers ``capability`` (see :data:`CAPABILITIES`), else the reason."""
    if capability not in CAPABILITIES:
        raise ValueError(f"capability must be one of {CAPABILITIES}, got {capability!r}")
    if capability == "states":
        return None
    model_type = model.config.model_type
    arch = architecture(model_type)
    if arch is None:
        return (f"kadapt has no layer runner for this architecture (supported: {', '.join(supported_model_types())}); "
                "only families that read hidden states work on it")
    reason = arch.layers_refusal(model)
    if reason is None and capability == "ffn":
        reason = arch.ffn_refusal(model)
    return reason


# -------------------------------------------------------------------- the README table
#: how the README names each supported model type, in table order
DISPLAY_NAMES = {
    "bert": "BERT", "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa", "camembert": "CamemBERT",
    "electra": "ELECTRA", "deberta": "DeBERTa (v1)", "deberta-v2": "DeBERTa-v2 / v3", "distilbert": "DistilBERT",
    "albert": "ALBERT", "mpnet": "MPNet", "modernbert": "ModernBERT",
}
TABLE_BEGIN = "<!-- encoder-support-table: generated by kadapt.plugins.encoder_support_table(); do not edit -->"
TABLE_END = "<!-- /encoder-support-table -->"


def _cell(arch: Architecture | None, needs) -> str:
    if arch is None:
        return "exact (full forward, slower)" if set(needs) <= {"states"} else "refused"
    if "ffn" in needs and arch.ffn_note:
        return arch.ffn_note
    return "exact"


def support_table(needs_by_family: dict[str, tuple[str, ...]]) -> str:
    """The Markdown table "which encoders work with which family": one row per registered model type
    (plus any other encoder), one column per family (``{label: Plugin.backbone_needs}``)."""
    labels = list(needs_by_family)
    lines = ["| encoder (`model_type`) | " + " | ".join(labels) + " | notes |",
             "|---" * (len(labels) + 2) + "|"]
    for model_type in DISPLAY_NAMES:
        arch = _REGISTRY[model_type]
        cells = [_cell(arch, needs_by_family[label]) for label in labels]
        lines.append(f"| {DISPLAY_NAMES[model_type]} (`{model_type}`) | " + " | ".join(cells)
                     + f" | {arch.layers_note} |")
    cells = [_cell(None, needs_by_family[label]) for label in labels]
    lines.append("| any other encoder-only model | " + " | ".join(cells)
                 + " | encoder-decoder and decoder-only models are refused |")
    return "\n".join(lines)
