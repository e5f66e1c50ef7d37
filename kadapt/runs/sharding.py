"""Sharded training (``training.sharding: fsdp``) and the DeepSpeed refusal.

FSDP here is PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) applied by kadapt under the
``accelerate`` launcher: every parameterised element of every ``nn.ModuleList`` of the trainable model
(the layers of a fully fine-tuned backbone, a plug-in's transformer layers) becomes one FSDP unit, then
the whole model; weights, gradients and AdamW state are sharded across the processes, a unit's full
weights exist only while it runs. accelerate 1.15's own FSDP path accepts only accelerator devices (on
CPU it silently trains with DDP), so kadapt shards itself: the same code runs on CPU with gloo
(tested, 2 processes) and on GPUs with NCCL. The optimizer, scheduler, data loader, mixed precision and
gradient accumulation still go through ``accelerate``. After training the model is un-sharded in place
(every rank holds the full trained weights) so saving, evaluation and the returned model are as
without sharding. The frozen backbone of infusion is outside the module tree and is not sharded
(every process holds it, as under DDP).

DeepSpeed is refused: it does not install beside torch 2.13 on the machines kadapt is tested on, and
its ZeRO checkpoints are pickled (kadapt checkpoints are safetensors + JSON only). FSDP gives the
same sharding (ZeRO-3 ≈ FSDP full sharding).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from kadapt.core.errors import KadaptError

DEEPSPEED_REFUSAL = ("training.sharding: deepspeed is not supported by kadapt (DeepSpeed does not install beside "
                     "torch 2.13 here and its ZeRO checkpoints are pickled); use training.sharding: fsdp (FSDP2: "
                     "ZeRO-3-style sharding with safetensors checkpoints)")


class ShardingError(KadaptError):
    """A sharding setting kadapt cannot honour."""


ACCELERATE_FSDP_REFUSAL = ("the accelerate launcher asked for its own FSDP (distributed_type: FSDP, "
                           "ACCELERATE_USE_FSDP=true), which would save pickled or mismatched checkpoints; launch with "
                           "distributed_type: MULTI_GPU and set training.sharding: fsdp")


def check_sharding(setting: str) -> None:
    """Refuse DeepSpeed, whether asked for in the recipe or by an ``accelerate config`` (launcher env),
    and accelerate's own FSDP (kadapt shards through ``training.sharding: fsdp``)."""
    launcher = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if setting == "deepspeed" or launcher:
        raise ShardingError(DEEPSPEED_REFUSAL + (" (the accelerate launcher asked for DeepSpeed: "
                                                 "ACCELERATE_USE_DEEPSPEED=true)" if launcher else ""))
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise ShardingError(ACCELERATE_FSDP_REFUSAL)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules that become FSDP units, innermost first, the model last."""
    units = [child for module in model.modules() if isinstance(module, nn.ModuleList)
             for child in module if any(True for _ in child.parameters())]
    order = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(units, key=lambda m: -order[id(m)]) + [model]


def shard_model(model: nn.Module, device: torch.device) -> None:
    """Apply FSDP2 ``fully_shard`` to every unit of ``model`` (in place; call on every rank)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh)


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unshard_model(model: nn.Module) -> None:
    """Undo :func:`shard_model` in place: every rank gets the full weights as plain parameters and the
    modules their own classes and hooks back (call on every rank, after the last backward)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule, fully_shard

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    for module in list(model.modules()):
        if not isinstance(module, FSDPModule):
            continue
        state = fully_shard.state(module)
        state._pre_forward_hook_handle.remove()
        state._post_forward_hook_handle.remove()
        group = state._fsdp_param_group
        if group is not None:
            for handle in [*group._module_to_pre_save_state_dict_hook_handle.values(),
                           *group._module_to_pre_load_state_dict_hook_handle.values()]:
                handle.remove()
        module.__class__ = next(c for c in type(module).__bases__ if c is not FSDPModule)
    for name, param in list(model.named_parameters()):
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        owner._parameters[attr] = nn.Parameter(full[name].detach().clone(), requires_grad=param.requires_grad)
