"""The backbone of the trainable fine-tuning modes: fully fine-tuned, or through an ``adapters`` task
adapter (LoRA / bottleneck) so the base weights stay untouched."""
from __future__ import annotations

import copy

import torch

from kadapt.core.backbone import Backbone
from kadapt.core.errors import KadaptError

#: name of the task adapter added to the backbone in the lora / bottleneck modes
TASK_ADAPTER = "kadapt_task"


class TunedBackbone(Backbone):
    """A backbone that trains fully (``full``) or through a task adapter (``lora``/``bottleneck``).

    Same interface as :class:`~kadapt.core.backbone.FrozenBackbone`, but ``encode`` runs the whole
    model WITH autograd. ``adapter_config``: the ``adapters`` library config of the task adapter
    (``lora`` / ``bottleneck``).
    ``fingerprint`` stays the base weights' fingerprint (taken before any change). The wrapped model
    is a copy of ``base.model`` unless ``copy_weights=False`` (then ``base`` must not be used again).
    """

    def __init__(self, base: Backbone, mode: str, adapter_config=None, *, copy_weights: bool = True):
        if mode not in ("full", "lora", "bottleneck"):
            raise KadaptError(f"TunedBackbone needs backbone mode full, lora or bottleneck, got {mode!r}")
        if mode != "full" and adapter_config is None:
            raise KadaptError(f"backbone mode {mode!r} needs the task adapter's config")
        base_fingerprint = base.fingerprint
        model = copy.deepcopy(base.model) if copy_weights else base.model
        super().__init__(model, base.tokenizer, name=base.name)
        self._fingerprint = base_fingerprint
        self.mode = mode
        if self.mode == "full":
            self.model.requires_grad_(True)
        else:
            import adapters

            adapters.init(self.model)
            self.model.add_adapter(TASK_ADAPTER, config=adapter_config)
            self.model.train_adapter(TASK_ADAPTER)  # freezes every base weight
            self.model.set_active_adapters(TASK_ADAPTER)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers,
               token_type_ids: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """Hidden states at ``layers`` from one full forward pass, with autograd."""
        wanted = self._check_layers(layers)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}  # DistilBERT has none
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **extra)
        return {i: out.hidden_states[i] for i in wanted}

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Also recompute the trainable model's layers in its backward pass (transformers' switch)."""
        super().set_gradient_checkpointing(enabled)
        if not enabled:
            self.model.gradient_checkpointing_disable()
            return
        try:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        except ValueError as err:
            raise KadaptError(f"training.gradient_checkpointing: backbone {self.name!r} ({self.spec.model_type}) "
                              f"cannot recompute its layers: {err}") from None

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """What a run must save of the backbone: all weights (full) or the task adapter's only."""
        state = self.model.state_dict()
        if self.mode == "full":
            return state
        return {k: v for k, v in state.items() if f".{TASK_ADAPTER}." in k}

    def save_task_adapter(self, directory) -> None:
        """The task adapter in the ``adapters`` library's own format (``adapter_config.json``,
        ``adapter.safetensors``, and ``pytorch_adapter.bin`` — a plain tensor dict, which ``adapters`` reads
        with ``torch.load(weights_only=True)`` — so plain ``model.load_adapter(directory)`` loads it)."""
        if self.mode == "full":
            raise KadaptError("backbone mode 'full' has no task adapter to save")
        for use_safetensors in (True, False):
            self.model.save_adapter(str(directory), TASK_ADAPTER, use_safetensors=use_safetensors)

    def load_tuned_state(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        expected = set(self.tuned_state())
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise KadaptError(f"{source}: tensors do not match the {self.mode} backbone "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
        self.model.load_state_dict(tensors, strict=False)
