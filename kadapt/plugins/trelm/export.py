"""``kadapt export merged``: a TRELM plug-in's sparse FFN delta merged into a plain ``transformers`` model.

The folder written is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``, the
tokenizer) plus a ``README.md``; ``AutoModel.from_pretrained(folder)`` runs the backbone with the
knowledge-path delta in its weights, no kadapt needed. The plug-in pass adds the delta through hooks
(``x·W + x·ΔW``), the merged model computes ``x·(W + ΔW)``: equal up to float rounding
(tests/plugins/trelm/test_export.py measures it). The base backbone is never changed (a copy is merged).
"""
from __future__ import annotations

import copy
from pathlib import Path

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.fileio import atomic_write_text
from kadapt.core.folders import write_folder
from kadapt.store.plugin_dir import load_plugin

_README = """# {name}: TRELM knowledge-path delta merged into the backbone

Exported by `kadapt export merged` from the plug-in `{plugin}` ({neurons} knowledge-path FFN neurons over
{layers} layers) on the backbone `{backbone}`. A plain `transformers` model:

```python
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained("<this folder>")
tokenizer = AutoTokenizer.from_pretrained("<this folder>")
```
"""


def export_merged(plugin_dir: str | Path, backbone, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``backbone`` with the TRELM plug-in's delta merged into (a copy of) its FFN weights to ``out``.

    ``backbone``: the :class:`FrozenBackbone` the plug-in was infused on, or its name / folder
    (fingerprint checked)."""
    if not isinstance(backbone, FrozenBackbone):
        backbone = FrozenBackbone.from_pretrained(str(backbone))
    loaded = load_plugin(plugin_dir, backbone, expected_kind="trelm")
    model = copy.deepcopy(backbone.model)
    loaded.plugin.delta.merge(model)

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        if backbone.tokenizer is not None:
            backbone.tokenizer.save_pretrained(folder)
        atomic_write_text(folder / "README.md", _README.format(
            name=loaded.name, plugin=plugin_dir, neurons=sum(loaded.plugin.delta.counts),
            layers=loaded.plugin.delta.num_layers, backbone=backbone.name))

    return write_folder(out, write, overwrite=overwrite, what="export")
