"""Writing a benchmark's results file, ``benchmarks/results/<name>.json``: the figures a Markdown table
in the docs is rendered from (``benchmarks/tables.py``), with the script that wrote them, the settings
and a note on the machine they were measured on."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_note() -> dict:
    """Where the figures were measured: CPU count, platform, torch version, load average (a shared
    machine's load changes wall times; CPU-time figures are less affected)."""
    note = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}
    torch = sys.modules.get("torch")
    if torch is not None:
        note["torch"] = torch.__version__
        note["torch_threads"] = torch.get_num_threads()
        note["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return note


def write_results(path: str | Path, figures: dict, written_by: str, settings: dict, command: str | None = None) -> Path:
    """Write ``figures`` with ``written_by`` / ``command`` / ``settings`` / ``machine`` in front; returns the path."""
    path = Path(path)
    artifact = {"written_by": written_by, "command": command or " ".join(["python", written_by, *sys.argv[1:]]),
                "settings": settings, "machine": machine_note(), **figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(artifact, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path
