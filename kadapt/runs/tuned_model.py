"""Fine-tuning modes: what trains besides the task head, how plug-in features are fused, what is saved.

Recipe section ``finetune`` (:class:`FinetuneSection`):

* ``backbone: frozen`` (default) — the :class:`~kadapt.core.backbone.Backbone` as in infusion; no
  autograd through it. ``full`` — every backbone weight trains (the papers' setting).
  ``lora`` / ``bottleneck`` — a task adapter from the ``adapters`` library is added to the backbone and
  only it trains; the base weights stay byte-identical.
* ``plugins: frozen`` (default) or ``trainable``.
* ``fusion: concat`` (default) — features ``[backbone_last ; plugin_1 ; ...]``. ``kadapter`` —
  K-Adapter's fine-tuning fusion: per plug-in a linear map of ``[backbone_last ; plugin_i]`` back to the
  hidden size, then the maps are concatenated (the backbone alone when there is no plug-in).

Identity: plug-ins were infused over the ORIGINAL backbone weights. A :class:`TunedBackbone`
records the fingerprint of the base weights when it is created, before anything changes, and reports
that one; so plug-in loading and the run's ``head_config.json`` always compare against the base model,
also after full fine-tuning. The tuned weights get their own sha256 (``tuned_backbone_sha256``),
checked when a run is reloaded.

Files a run folder gets per mode (besides ``head.safetensors``): ``fusion.safetensors`` (kadapter
fusion), ``plugins.safetensors`` (trainable plug-ins), ``backbone.safetensors`` (full),
``task_adapter.safetensors`` (lora/bottleneck: the adapter weights only) and, for other tools, the same
task adapter in the ``adapters`` library's own format in ``task_adapter/`` (plain ``adapters`` code loads
it with ``model.load_adapter(run_dir / "task_adapter")``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kadapt.core.backbone import Backbone, hash_state_dict
from kadapt.core.tuned_backbone import TunedBackbone
from kadapt.core.model import KnowledgeModel
from kadapt.core.errors import KadaptError
from kadapt.runs.recipe import FinetuneSection
from kadapt.core.fileio import load_tensors, save_tensors
from kadapt.core.objective import Objective
from kadapt.core.plugin import Plugin



# ---------------------------------------------------------------------------------- backbone
def adapter_config(section: FinetuneSection):
    """The ``adapters`` library config of the task adapter for ``section.backbone``."""
    from adapters import LoRAConfig, SeqBnConfig

    if section.backbone == "lora":
        return LoRAConfig(r=section.lora_r, alpha=section.lora_alpha, dropout=section.lora_dropout,
                          attn_matrices=list(section.lora_matrices))
    if section.backbone == "bottleneck":
        return SeqBnConfig(reduction_factor=section.reduction_factor)
    raise KadaptError(f"backbone mode {section.backbone!r} has no task adapter")


def make_backbone(base: Backbone, section: FinetuneSection, *, copy_weights: bool = True) -> Backbone:
    """``base`` itself for the frozen mode, else a :class:`TunedBackbone` over it."""
    if section.backbone == "frozen":
        return base
    config = adapter_config(section) if section.backbone != "full" else None
    return TunedBackbone(base, section.backbone, config, copy_weights=copy_weights)


# ---------------------------------------------------------------------------------- model
class KAdapterFusion(nn.Module):
    """Per plug-in ``Linear([backbone_last ; plugin_i]) -> hidden``; outputs concatenated."""

    def __init__(self, hidden_size: int, plugin_sizes: Sequence[int]):
        super().__init__()
        self.hidden_size = hidden_size
        self.maps = nn.ModuleList(nn.Linear(hidden_size + size, hidden_size) for size in plugin_sizes)

    @property
    def output_size(self) -> int:
        return self.hidden_size * max(1, len(self.maps))

    def forward(self, last: torch.Tensor, plugin_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.maps:
            return last
        return torch.cat([m(torch.cat([last, out.to(last.dtype)], dim=-1))
                          for m, out in zip(self.maps, plugin_outputs)], dim=-1)


class TunableKnowledgeModel(KnowledgeModel):
    """:class:`KnowledgeModel` with a fine-tuning mode; identical to it for the all-frozen concat default.

    A trainable backbone's model joins the module tree as ``backbone_model`` (so it is optimised,
    checkpointed and DDP-wrapped); the frozen backbone stays outside it as before.
    """

    def __init__(self, backbone: Backbone, plugins: Sequence[Plugin] = (), head: Objective | None = None,
                 section: FinetuneSection | None = None):
        super().__init__(backbone, plugins, head)
        self.section = (section or FinetuneSection()).validate()
        if isinstance(backbone, TunedBackbone):
            self.backbone_model = backbone.model
        elif self.section.backbone != "frozen":
            raise KadaptError(f"backbone mode {self.section.backbone!r} needs a TunedBackbone (make_backbone)")
        for plugin in self.plugins:
            plugin.requires_grad_(self.section.plugins == "trainable")
        self.fusion = (KAdapterFusion(backbone.spec.hidden_size, [p.output_size for p in self.plugins])
                       if self.section.fusion == "kadapter" else None)

    @property
    def feature_size(self) -> int:
        if self.fusion is not None:
            return self.fusion.output_size
        return super().feature_size

    def combine(self, last: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        if self.fusion is None:
            return super().combine(last, outputs)
        return self.fusion(last, outputs)

    def trainable_counts(self) -> dict[str, int]:
        """Trainable parameters per part (exact; what the optimizer gets)."""
        def count(params) -> int:
            return sum(p.numel() for p in params if p.requires_grad)

        return {
            "head": count(self.head.parameters()) if self.head is not None else 0,
            "fusion": count(self.fusion.parameters()) if self.fusion is not None else 0,
            "plugins": count(self.plugins.parameters()),
            "backbone": count(self.backbone.model.parameters()),
        }


# ---------------------------------------------------------------------------------- saving
HEAD_FILE = "head.safetensors"
FUSION_FILE = "fusion.safetensors"
PLUGINS_FILE = "plugins.safetensors"
BACKBONE_FILE = "backbone.safetensors"
ADAPTER_FILE = "task_adapter.safetensors"
ADAPTERS_FORMAT_DIR = "task_adapter"  # the task adapter as the `adapters` library saves it


def tuned_files(model: TunableKnowledgeModel) -> dict[str, dict[str, torch.Tensor]]:
    """Every file of trained weights the run folder gets, by file name."""
    files = {HEAD_FILE: model.head.state_dict()}
    if model.fusion is not None:
        files[FUSION_FILE] = model.fusion.state_dict()
    if model.section.plugins == "trainable":
        files[PLUGINS_FILE] = {f"{i}.{k}": v for i, p in enumerate(model.plugins) for k, v in p.state_dict().items()}
    if isinstance(model.backbone, TunedBackbone):
        name = BACKBONE_FILE if model.section.backbone == "full" else ADAPTER_FILE
        files[name] = model.backbone.tuned_state()
    return files


def save_tuned(run_dir: Path, model: TunableKnowledgeModel) -> dict:
    """Write the tuned weights; returns what ``head_config.json`` records about the mode."""
    for name, tensors in tuned_files(model).items():
        meta = {"objective": model.head.name} if name == HEAD_FILE else {"finetune": json.dumps(model.section.to_dict())}
        save_tensors(run_dir / name, {k: v.detach().contiguous() for k, v in tensors.items()}, meta)
    info = {"finetune": model.section.to_dict()}
    if ADAPTER_FILE in tuned_files(model):
        model.backbone.save_task_adapter(run_dir / ADAPTERS_FORMAT_DIR)
        info["adapters_format"] = ADAPTERS_FORMAT_DIR
    if model.section.backbone == "full":
        info["tuned_backbone_sha256"] = hash_state_dict(model.backbone.model.state_dict())
    return info


def load_tuned(run_dir: Path, model: TunableKnowledgeModel, info: dict) -> None:
    """Load every tuned file written by :func:`save_tuned` into ``model`` (strict)."""
    for name in tuned_files(model):
        path = run_dir / name
        tensors, _ = load_tensors(path)
        if name == HEAD_FILE:
            model.head.load_state_dict(tensors, strict=True)
        elif name == FUSION_FILE:
            model.fusion.load_state_dict(tensors, strict=True)
        elif name == PLUGINS_FILE:
            for i, plugin in enumerate(model.plugins):
                prefix = f"{i}."
                plugin.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                       strict=True)
        else:
            model.backbone.load_tuned_state(tensors, str(path))
    if model.section.backbone == "full":
        actual = hash_state_dict(model.backbone.model.state_dict())
        if actual != info.get("tuned_backbone_sha256"):
            raise KadaptError(f"{run_dir / BACKBONE_FILE}: sha256 {actual} differs from the recorded "
                              f"{info.get('tuned_backbone_sha256')}")
