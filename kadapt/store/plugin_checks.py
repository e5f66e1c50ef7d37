"""Checks that bind a plug-in's files together and keep bad numbers out.

* Config ↔ weights: every tensor file's safetensors metadata records ``config_sha256`` (and the bound
  values as ``config_json``): the plug-in kind and config and each objective's name and config (its
  label list included). An edit of the config after saving is refused with the file and the key.
  Files written before the binding existed load with a one-line note.
* Numerics: weights must be finite; a tensor the plug-in holds as floating point must be saved as
  floating point (fp16/bf16/fp64 are cast, with a note); integer/bool buffers must keep their dtype.
"""
from __future__ import annotations

import hashlib
import json
import logging

import torch

from kadapt.core.errors import PluginFormatError

log = logging.getLogger(__name__)
_CONFIG_FILE = "kadapt_config.json"


def bound_values(record: dict) -> dict:
    """What the weights were trained for: kind, config, objective names + configs (normalised JSON)."""
    values = {
        "kind": record["kind"],
        "config": record["config"],
        "objectives": [{"name": o.get("name"), "config": o.get("config")} for o in record.get("objectives", [])],
    }
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def binding_metadata(record: dict) -> dict[str, str]:
    values = bound_values(record)
    return {"config_sha256": _digest(values), "config_json": json.dumps(values, sort_keys=True)}


def first_difference(saved, current, key: str = "") -> tuple[str, object, object] | None:
    """The first dotted key whose value differs (``None`` when equal)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for k in sorted(set(saved) | set(current), key=str):
            found = first_difference(saved.get(k), current.get(k), f"{key}.{k}" if key else str(k))
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for i, (a, b) in enumerate(zip(saved, current)):
            found = first_difference(a, b, f"{key}[{i}]")
            if found:
                return found
        return None
    return None if saved == current else (key, saved, current)


def check_binding(path, meta: dict, record: dict, config_path=None) -> None:
    """Refuse a tensor file whose recorded config differs from the plug-in config (``config_path``,
    default ``kadapt_config.json`` beside it) now."""
    if "config_sha256" not in meta:
        log.info("%s: no config_sha256 in the metadata (written before config binding); config not cross-checked",
                 path)
        return
    current = bound_values(record)
    if _digest(current) == meta["config_sha256"]:
        return
    try:
        saved = json.loads(meta.get("config_json", "null"))
    except ValueError:
        saved = None
    found = first_difference(saved, current) if saved is not None else None
    config_path = config_path or path.parent / _CONFIG_FILE
    if found:
        key, old, new = found
        raise PluginFormatError(f"{config_path}: key {key!r} is {json.dumps(new)} but {path.name} was trained with "
                                f"{json.dumps(old)}; the config was edited after saving (restore it or re-infuse)")
    raise PluginFormatError(f"{config_path}: the config does not match the config_sha256 recorded in {path.name} "
                            "(edited after saving)")


def check_tensors(path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor] | None = None) -> None:
    """Non-finite values and wrong dtypes are one line naming the file and the tensor."""
    for key, value in tensors.items():
        want = expected.get(key) if expected is not None else None
        if want is not None and want.is_floating_point() and not value.is_floating_point():
            raise PluginFormatError(f"{path}: tensor {key!r} has dtype {str(value.dtype).replace('torch.', '')}; "
                                    "plug-in weights must be floating point")
        if want is not None and not want.is_floating_point() and value.dtype != want.dtype:
            raise PluginFormatError(f"{path}: tensor {key!r} has dtype {str(value.dtype).replace('torch.', '')}, "
                                    f"expected {str(want.dtype).replace('torch.', '')}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise PluginFormatError(f"{path}: tensor {key!r} has {bad} non-finite value(s) (NaN/Inf)")
        if want is not None and want.is_floating_point() and value.dtype != want.dtype:
            log.info("%s: tensor %r stored as %s, cast to %s", path, key, value.dtype, want.dtype)
