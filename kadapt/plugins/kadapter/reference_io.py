"""Bring your own weights: import a reference K-Adapter checkpoint, export a plug-in in its layout.

:func:`import_reference_checkpoint` reads a state dict written by microsoft/K-Adapter's
``fac-adapter.py`` / ``lin-adapter.py`` (``pytorch_model.bin``) safely — ``torch.load(weights_only=True)``
only, or a safetensors copy — maps its keys (:mod:`reference_layout`), infers the sizes from the
shapes, takes what the state dict does not record (``layers``, ``heads``) as options with the
reference's defaults, checks every tensor and refuses leftovers by name, and writes a normal plug-in
folder whose card says where it came from. The pre-training head (``com_dense``/``dense``/
``out_proj``, + ``self_attention`` for lin-adapter) goes to ``objective_heads.safetensors`` under its
reference names.

:func:`export_reference_layout` writes the other way: ``model.safetensors`` with the reference keys
(+ the reference head when the plug-in has one) and ``kadapter_reference.json`` with what the state
dict cannot hold (``adapter_list``, heads, the kadapt config), so ``import(export(p))`` gives ``p`` back
bit for bit. The reference scripts read ``pytorch_model.bin``; the export README says how to convert.

Behaviour difference, on purpose: kadapt masks padding inside the adapter's attention; the reference
attends to padding. On unpadded input the two agree to fp32 rounding (tests and
``benchmarks/kadapter_import.py`` measure both).
"""
from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError, PluginFormatError
from kadapt.core.family import build_plugin
from kadapt.core.fileio import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors, sha256_of_file
from kadapt.core.folders import write_folder
from kadapt.plugins.kadapter.plugin import KAdapter, KAdapterConfig, layer_preset
from kadapt.plugins.kadapter.reference_layout import (LINGUISTIC_HEAD, REFERENCE_HEADS, REFERENCE_LAYERS, check_layout,
                                                      head_script, infer_sizes, key_map)
from kadapt.store.plugin_checks import check_tensors
from kadapt.store.plugin_dir import HEADS_FILE, load_plugin, save_plugin

log = logging.getLogger(__name__)

SIDECAR_FILE = "kadapter_reference.json"
EXPORT_WEIGHTS = "model.safetensors"
CHECKPOINT_NAMES = ("pytorch_model.bin", EXPORT_WEIGHTS, "pytorch_model.safetensors")
HEAD_OBJECTIVE = "reference_pretraining_head"
REFERENCE_HEAD_MODULES = {name.split(".")[0] for name in LINGUISTIC_HEAD}  # com_dense, self_attention, dense, out_proj


# ------------------------------------------------------------------------------------------- reading
def read_reference_state(path: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict of a reference checkpoint (a file, or a folder holding one) and the file read.

    Never unpickles objects: ``torch.load(weights_only=True)``; ``.safetensors`` via safetensors."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in CHECKPOINT_NAMES if (path / n).is_file()]
        if not found:
            raise PluginFormatError(f"{path}: no checkpoint in this folder (looked for {', '.join(CHECKPOINT_NAMES)})")
        path = found[0]
    if not path.is_file():
        raise PluginFormatError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        return load_tensors(path)[0], path
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = f"it pickles {found.group(1)}" if found else str(err).splitlines()[0]
        raise PluginFormatError(f"{path}: not a plain state dict ({what}); the safe loader (torch.load "
                                "weights_only=True) refuses it — save model.state_dict() instead") from None
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile, OSError) as err:
        reason = str(err).split(". ")[0] or type(err).__name__
        raise PluginFormatError(f"{path}: truncated or corrupt checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise PluginFormatError(f"{path}: holds a {type(state).__name__}, not a state dict")
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise PluginFormatError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")
    return dict(state), path


# ------------------------------------------------------------------------------------------- import
def _as_backbone(backbone) -> FrozenBackbone:
    if isinstance(backbone, FrozenBackbone):
        return backbone
    return FrozenBackbone.from_pretrained(str(backbone))


def reference_config(sizes: dict, sidecar: dict, *, layers, heads: int | None, name: str | None,
                     num_backbone_layers: int, path) -> KAdapterConfig:
    """The plug-in config: shapes from the checkpoint; layers/heads from the options, else the export's
    sidecar, else the reference defaults (0,11,22; 12 heads)."""
    base = dict(sidecar.get("kadapt_config") or {})
    base.update(adapter_size=sizes["adapter_size"], num_transformer_layers=sizes["num_layers"],
                intermediate_size=sizes["intermediate"])
    if heads is not None or "num_attention_heads" not in base:
        base["num_attention_heads"] = heads if heads is not None else REFERENCE_HEADS
    if name is not None or "name" not in base:
        base["name"] = name or "kadapter-imported"
    listed = tuple(layers) if layers is not None else tuple(sidecar.get("adapter_list") or REFERENCE_LAYERS)
    if len(listed) != sizes["num_adapters"]:
        raise PluginFormatError(
            f"{path}: the checkpoint has {sizes['num_adapters']} adapter layers (keys adapter.0 .. "
            f"adapter.{sizes['num_adapters'] - 1}) but the layer list {list(listed)} has {len(listed)} entries "
            "(pass --layers with one backbone layer per adapter)")
    kept = base.get("layers")
    config = KAdapterConfig.from_dict(base, source=f"{path.parent / SIDECAR_FILE}: key 'kadapt_config'")
    if kept is not None and config.resolved_layers(num_backbone_layers) == listed:
        return config
    preset = next((p for p in ("reference", "paper") if layer_preset(p, num_backbone_layers) == listed), None)
    config.layers = preset or listed
    return config


def import_reference_checkpoint(checkpoint: str | Path, backbone, out: str | Path, *, layers=None,
                                heads: int | None = None, skip_layers: int = 0, name: str | None = None,
                                overwrite: bool = False) -> Path:
    """Write a kadapt plug-in folder at ``out`` from a reference K-Adapter checkpoint; returns ``out``.

    ``backbone``: a :class:`FrozenBackbone`, or its hub name / local folder (the plug-in records its
    fingerprint). ``layers``: backbone hidden-state indices the adapters read (default: the export's
    sidecar, else the reference scripts' 0,11,22). ``heads``: attention heads of the adapter transformer
    (default 12). ``skip_layers``: the reference's ``adapter_skip_layers``; only values that leave the
    computation unchanged (0, or more than the number of adapters) are accepted."""
    state, path = read_reference_state(checkpoint)
    sizes = infer_sizes(state, path)
    backbone = _as_backbone(backbone)
    heads_keys = check_layout(state, path, sizes, backbone.spec.hidden_size, backbone.name or "the backbone")
    if 1 <= skip_layers <= sizes["num_adapters"]:
        raise KadaptError(f"{path}: adapter_skip_layers {skip_layers} adds earlier adapter outputs (reference "
                          f"AdapterModel.forward); kadapt implements adapter_skip_layers 0, what the reference "
                          "scripts pass")
    sidecar_path = path.parent / SIDECAR_FILE
    sidecar = read_json(sidecar_path, "K-Adapter export sidecar") if sidecar_path.is_file() else {}
    config = reference_config(sizes, sidecar, layers=layers, heads=heads, name=name,
                              num_backbone_layers=backbone.spec.num_layers, path=path)
    try:
        plugin = build_plugin("kadapter", config, backbone.spec, source=str(path))
    except PluginFormatError as err:
        raise PluginFormatError(f"{err} (options --layers / --heads)") from None
    mapping = key_map(sizes["num_adapters"], sizes["num_layers"])
    check_tensors(path, state)  # NaN/Inf: one line naming the file and the key
    cast = sorted({str(state[k].dtype) for k in mapping if state[k].dtype != torch.float32})
    plugin.load_state_dict({ours: state[ref].float() for ref, ours in mapping.items()}, strict=True)
    head = {k: state[k].float().contiguous() for k in heads_keys}
    objectives = ([{"name": HEAD_OBJECTIVE, "config": {"script": head_script(heads_keys),
                                                       "out_features": int(state["out_proj.weight"].shape[0])}}]
                  if head else [])
    card = {
        "summary": (f"Imported from the reference K-Adapter checkpoint `{path}` (sha256 `{sha256_of_file(path)}`), "
                    "microsoft/K-Adapter AdapterModel layout, with `kadapt import kadapter`."),
        "data": sidecar.get("data", "as trained by the checkpoint's author (not recorded in the checkpoint)"),
        "notes": [f"adapter layers read backbone states {list(plugin.layer_ids)}"
                  f"{' (--layers)' if layers is not None else ''}; {config.num_attention_heads} attention heads"
                  f"{' (--heads)' if heads is not None else ''}: the state dict records neither",
                  "kadapt masks padding in the adapter attention; the reference attends to padding, so padded "
                  "batches differ from the reference (unpadded ones agree to fp32 rounding)",
                  *([f"tensors cast to float32 from {', '.join(cast)}"] if cast else []),
                  *([f"pre-training head of {head_script(heads_keys)} kept in {HEADS_FILE} under its reference "
                     "names"] if head else [])],
    }
    return save_plugin(plugin.eval(), out, backbone.fingerprint, objectives=objectives, heads=head, card=card,
                       overwrite=overwrite)


# ------------------------------------------------------------------------------------------- export
def export_reference_layout(plugin_dir: str | Path, out: str | Path, *, backbone=None,
                            overwrite: bool = False) -> Path:
    """Write a K-Adapter plug-in in the reference state-dict layout (safetensors) to folder ``out``.

    Without ``backbone`` the plug-in is built from its recorded sizes (fingerprint not checked)."""
    plugin_dir = Path(plugin_dir)
    if backbone is not None:
        loaded = load_plugin(plugin_dir, _as_backbone(backbone), expected_kind="kadapter")
    else:
        loaded = load_plugin(plugin_dir, spec=_spec_from_record(plugin_dir), expected_kind="kadapter")
    plugin: KAdapter = loaded.plugin
    sizes = {"num_adapters": len(plugin.layer_ids), "num_layers": plugin.config.num_transformer_layers}
    ours = plugin.state_dict()
    tensors = {ref: ours[key] for ref, key in key_map(**sizes).items()}
    reference_heads = {k: v for k, v in loaded.heads.items() if k.split(".")[0] in REFERENCE_HEAD_MODULES}
    omitted = sorted(set(loaded.heads) - set(reference_heads))
    tensors.update(reference_heads)
    sidecar = {
        "adapter_list": list(plugin.layer_ids), "adapter_size": plugin.config.adapter_size,
        "adapter_transformer_layers": plugin.config.num_transformer_layers, "adapter_skip_layers": 0,
        "num_attention_heads": plugin.config.num_attention_heads,
        "intermediate_size": plugin.config.intermediate_size, "project_hidden_size": plugin.spec.hidden_size,
        "layer_norm_eps": plugin.config.layer_norm_eps, "kadapt_config": plugin.config.to_dict(),
        "backbone": loaded.fingerprint.to_dict(), "source": str(plugin_dir),
        "heads_omitted": omitted,
    }
    return _publish_export(out, tensors, sidecar, overwrite)


def _spec_from_record(plugin_dir: Path):
    from kadapt.core.backbone import BackboneSpec
    from kadapt.store.plugin_dir import read_record

    fp = read_record(plugin_dir, "kadapter")["backbone"]
    return BackboneSpec(model_type=fp["model_type"], hidden_size=fp["hidden_size"], num_layers=fp["num_layers"],
                        num_attention_heads=1, intermediate_size=1, vocab_size=fp["vocab_size"])


_EXPORT_README = """# K-Adapter weights in the reference layout

Exported by kadapt from `{source}`: the state-dict keys of microsoft/K-Adapter's `AdapterModel`
(`adapter.{{i}}.down_project`, `adapter.{{i}}.encoder.layer.{{j}}.*`, `adapter.{{i}}.up_project`{head}),
stored as safetensors (no pickle). `kadapter_reference.json` records what the state dict cannot:
`adapter_list` {adapter_list}, `adapter_size` {adapter_size}, `adapter_transformer_layers` {layers},
`adapter_skip_layers` 0 — pass these to the reference scripts.

The reference scripts read `pytorch_model.bin` (`--meta_fac_adaptermodel` / `--meta_lin_adaptermodel`);
convert once with

```python
import torch
from safetensors.torch import load_file
torch.save(load_file("model.safetensors"), "pytorch_model.bin")
```

`kadapt import kadapter <this folder> --backbone <backbone> --out DIR` gives the plug-in back bit for bit.
"""


def _publish_export(out, tensors: dict, sidecar: dict, overwrite: bool) -> Path:
    def write(folder: Path) -> None:
        save_tensors(folder / EXPORT_WEIGHTS, tensors, {"format": "pt", "layout": "microsoft/K-Adapter AdapterModel"})
        atomic_write_json(folder / SIDECAR_FILE, sidecar)
        head = ", `com_dense`, `dense`, `out_proj`" if "com_dense.weight" in tensors else ""
        atomic_write_text(folder / "README.md", _EXPORT_README.format(
            source=sidecar["source"], head=head, adapter_list=",".join(map(str, sidecar["adapter_list"])),
            adapter_size=sidecar["adapter_size"], layers=sidecar["adapter_transformer_layers"]))

    return write_folder(out, write, overwrite=overwrite, what="export")
