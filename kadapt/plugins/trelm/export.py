"""``kadapt export merged``: a TRELM plug-in's sparse FFN delta merged into a plain ``transformers`` model.

The folder written is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``, the
tokenizer) plus a ``README.md``; ``AutoModel.from_pretrained(folder)`` runs the backbone with the
knowledge-path delta in its weights, no kadapt needed. The plug-in pass adds the delta through hooks
(``x·W + x·ΔW``), the merged model computes ``x·(W + ΔW)``: equal up to float rounding
(tests/plugins/trelm/test_export.py measures it). The base backbone is never changed (a copy is merged).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.fileio import atomic_write_text
from kadapt.core.folders import (FolderExistsError, check_path_length, clean_stale, folder_has_content,
                                 publish_folder, staging_path, write_manifest)
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
    out = check_path_length(Path(out), "export folder")
    if folder_has_content(out) and not overwrite:
        raise FolderExistsError(f"{out}: folder is not empty; pass overwrite=True (CLI: --overwrite) to replace it")
    model = copy.deepcopy(backbone.model)
    loaded.plugin.delta.merge(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    staging = staging_path(out)
    staging.mkdir()
    try:
        model.save_pretrained(staging, safe_serialization=True)
        if backbone.tokenizer is not None:
            backbone.tokenizer.save_pretrained(staging)
        atomic_write_text(staging / "README.md", _README.format(
            name=loaded.name, plugin=plugin_dir, neurons=sum(loaded.plugin.delta.counts),
            layers=loaded.plugin.delta.num_layers, backbone=backbone.name))
        write_manifest(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_folder(staging, out, overwrite=overwrite, what="export")
