"""The state-dict layout of the reference K-Adapter code (microsoft/K-Adapter ``fac-adapter.py`` /
``lin-adapter.py``, class ``AdapterModel``) and its mapping onto :class:`KAdapter`.

``AdapterModel.adapter`` is a ``ModuleList`` of ``Adapter`` modules, one per entry of ``adapter_list``;
each has ``down_project`` (H → adapter_size), ``encoder`` (a BERT encoder: ``layer.{j}.attention.self.
{query,key,value}``, ``attention.output.{dense,LayerNorm}``, ``intermediate.dense``,
``output.{dense,LayerNorm}``) and ``up_project`` (adapter_size → H). Beside the adapters the
pre-training head: ``com_dense`` (2H → H), ``dense`` and ``out_proj``; ``lin-adapter.py`` adds a
one-head ``self_attention`` (a BERT attention block) between them. The fine-tuning scripts drop the
head. The state dict does not record ``adapter_list`` (the scripts pass 0,11,22), the adapter's
attention heads (12, hard-coded), ``adapter_skip_layers`` (the scripts pass 0) or LayerNorm eps (1e-5).
"""
from __future__ import annotations

import re

import torch

from kadapt.core.errors import PluginFormatError

#: reference BERT-layer sub-module → KAdapter's AdapterTransformerLayer attribute
TRANSFORMER_NAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
_ADAPTER_KEY = re.compile(r"^adapter\.(\d+)\.(?:down_project|up_project|encoder\.layer\.(\d+)\.(.+))\.(?:weight|bias)$")
#: pre-training head keys of fac-adapter.py (relation classification) and lin-adapter.py (head prediction)
FACTUAL_HEAD = ("com_dense", "dense", "out_proj")
LINGUISTIC_HEAD = ("com_dense", "self_attention.self.query", "self_attention.self.key", "self_attention.self.value",
                   "self_attention.output.dense", "self_attention.output.LayerNorm", "dense", "out_proj")
REFERENCE_LAYERS = (0, 11, 22)
REFERENCE_HEADS = 12


def key_map(num_adapters: int, num_layers: int) -> dict[str, str]:
    """Reference adapter key → KAdapter state-dict key, for every tensor of the adapters."""
    pairs = {}
    for i in range(num_adapters):
        for ref, ours in (("down_project", "down"), ("up_project", "up")):
            for p in ("weight", "bias"):
                pairs[f"adapter.{i}.{ref}.{p}"] = f"adapter_layers.{i}.{ours}.{p}"
        for j in range(num_layers):
            for ref, ours in TRANSFORMER_NAMES.items():
                for p in ("weight", "bias"):
                    pairs[f"adapter.{i}.encoder.layer.{j}.{ref}.{p}"] = f"adapter_layers.{i}.layers.{j}.{ours}.{p}"
    return pairs


def head_keys(state: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """The head keys the checkpoint should hold: none, fac-adapter's or lin-adapter's."""
    present = {k.rsplit(".", 1)[0] for k in state if not k.startswith("adapter.")}
    if not present & set(LINGUISTIC_HEAD):
        return ()
    modules = LINGUISTIC_HEAD if any(m.startswith("self_attention.") for m in present) else FACTUAL_HEAD
    return tuple(f"{m}.{p}" for m in modules for p in ("weight", "bias"))


def head_script(keys: tuple[str, ...]) -> str:
    return "lin-adapter.py" if any(k.startswith("self_attention.") for k in keys) else "fac-adapter.py"


def infer_sizes(state: dict[str, torch.Tensor], path) -> dict[str, int]:
    """Counts and widths read from the keys and shapes; unknown keys are refused by name."""
    adapters, layers = set(), set()
    heads = set(head_keys(state))
    for key in sorted(state):
        match = _ADAPTER_KEY.match(key)
        if match:
            adapters.add(int(match.group(1)))
            if match.group(2) is not None:
                if match.group(3) not in TRANSFORMER_NAMES:
                    raise PluginFormatError(f"{path}: unexpected key {key!r} (not part of the reference "
                                            "AdapterModel layout)")
                layers.add(int(match.group(2)))
        elif key not in heads:
            raise PluginFormatError(f"{path}: unexpected key {key!r} (not part of the reference AdapterModel "
                                    "layout: adapter.{i}.down_project / encoder.layer.{j}.* / up_project, "
                                    "com_dense, dense, out_proj, self_attention.*)")
    if not adapters:
        raise PluginFormatError(f"{path}: no adapter weights (no key 'adapter.0.down_project.weight')")
    first_down, first_ffn = "adapter.0.down_project.weight", "adapter.0.encoder.layer.0.intermediate.dense.weight"
    for key in (first_down, first_ffn):
        if key not in state or state[key].ndim != 2:
            raise PluginFormatError(f"{path}: missing key {key!r} (or not a matrix)")
    size, hidden = state[first_down].shape
    return {"num_adapters": max(adapters) + 1, "num_layers": max(layers) + 1 if layers else 0,
            "hidden": int(hidden), "adapter_size": int(size), "intermediate": int(state[first_ffn].shape[0])}


def expected_shapes(sizes: dict[str, int], heads: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Every reference key with the shape the sizes imply (head ``out_proj`` rows are free: -1)."""
    h, a, f = sizes["hidden"], sizes["adapter_size"], sizes["intermediate"]
    per_layer = {"attention.self.query": (a, a), "attention.self.key": (a, a), "attention.self.value": (a, a),
                 "attention.output.dense": (a, a), "attention.output.LayerNorm": (a,),
                 "intermediate.dense": (f, a), "output.dense": (a, f), "output.LayerNorm": (a,)}
    shapes = {}
    for ref in key_map(sizes["num_adapters"], sizes["num_layers"]):
        parts = ref.split(".")
        if parts[2] in ("down_project", "up_project"):
            weight = (a, h) if parts[2] == "down_project" else (h, a)
            shapes[ref] = weight if parts[-1] == "weight" else weight[:1]
        else:
            weight = per_layer[".".join(parts[5:-1])]
            shapes[ref] = weight if parts[-1] == "weight" or len(weight) == 1 else weight[:1]
    dense_in = h if "self_attention.self.query.weight" in heads else 2 * h
    head_weights = {"com_dense": (h, 2 * h), "dense": (h, dense_in), "out_proj": (-1, h),
                    "self_attention.output.LayerNorm": (h,)}
    for key in heads:
        module, param = key.rsplit(".", 1)
        weight = head_weights.get(module, (h, h))
        shapes[key] = weight if param == "weight" or len(weight) == 1 else weight[:1]
    return shapes


def check_layout(state: dict[str, torch.Tensor], path, sizes: dict[str, int], backbone_hidden: int,
                 backbone_name: str) -> tuple[str, ...]:
    """Missing keys, wrong shapes and a hidden size other than the backbone's are one line each (file and
    key); returns the head keys present."""
    heads = head_keys(state)
    if sizes["hidden"] != backbone_hidden:
        raise PluginFormatError(
            f"{path}: key 'adapter.0.down_project.weight' has shape {tuple(state['adapter.0.down_project.weight'].shape)}: "
            f"the adapters read hidden size {sizes['hidden']}, backbone {backbone_name} has hidden size {backbone_hidden}")
    shapes = expected_shapes(sizes, heads)
    missing = [k for k in shapes if k not in state]
    if missing:
        raise PluginFormatError(
            f"{path}: missing key {missing[0]!r} ({len(missing)} missing; the checkpoint's keys imply "
            f"{sizes['num_adapters']} adapter layers of {sizes['num_layers']} transformer layers each)")
    out_rows = None
    for key, shape in shapes.items():
        actual = tuple(state[key].shape)
        if key.startswith("out_proj."):
            out_rows = actual[0] if out_rows is None else out_rows
            shape = (out_rows,) + shape[1:]
        if actual != shape:
            raise PluginFormatError(f"{path}: key {key!r} has shape {actual}, expected {shape} "
                                    f"(hidden {sizes['hidden']}, adapter_size {sizes['adapter_size']}, "
                                    f"intermediate {sizes['intermediate']})")
        if not state[key].is_floating_point():
            raise PluginFormatError(f"{path}: key {key!r} has dtype {str(state[key].dtype).replace('torch.', '')}; "
                                    "weights must be floating point")
    return heads
