"""Size a plug-in kind on a backbone without training it (``kadapt plugin-info --kind``)."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin, plugin_class


def describe_kind(kind: str, backbone: str | Path, *, meta: bool = True, overrides: list[str] = ()) -> dict:
    """Parameter count and resolved config of ``kind`` on ``backbone``.

    With ``meta=True`` only ``config.json`` is read and nothing is allocated, so RoBERTa-large sizes
    can be checked on any machine.
    """
    from transformers import AutoConfig

    cls = plugin_class(kind, "--kind")
    config = {}
    for text in overrides:
        if "=" not in text:
            raise KadaptError(f"--set {text!r}: expected key=value")
        key, value = text.split("=", 1)
        config[key] = yaml.safe_load(value)
    try:
        hf_config = AutoConfig.from_pretrained(str(backbone))
    except (OSError, ValueError) as err:
        raise KadaptError(f"{backbone}: cannot read a model config ({err})") from None
    if meta:
        frozen = FrozenBackbone.from_config(hf_config, meta=True)
        with torch.device("meta"):
            plugin = build_plugin(kind, config or None, frozen.spec, source="--set")
    else:
        frozen = FrozenBackbone.from_pretrained(backbone)
        plugin = build_plugin(kind, config or None, frozen.spec, source="--set")
    return {
        "kind": cls.kind,
        "placement": cls.placement,
        "reads_shared_states_only": cls.reads_shared_states_only,
        "parameters": plugin.num_parameters(),
        "config": plugin.config.to_dict(),
        "config_help": cls.config_class.help(),
        "required_layers": list(plugin.required_layers()),
        "output_size": plugin.output_size,
        "backbone": {"path": str(backbone), **frozen.spec.__dict__},
        "meta": meta,
    }
