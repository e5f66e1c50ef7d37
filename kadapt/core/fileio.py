"""Atomic file writes (temp file in the same folder + fsync + rename) and strict safetensors reads."""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from glob import escape as glob_escape
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from kadapt.core.errors import PluginFormatError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` so that ``path`` holds either its old content or all of ``data``, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _remove_orphans(path: Path) -> None:
    """Temp files of ``path`` left by a killed writer (their process no longer runs)."""
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*-*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` with NaN/Inf floats as ``None`` (JSON has no NaN; ``json.dumps`` would write invalid JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_line(obj) -> str:
    """One strict JSON line (non-finite floats written as ``null``)."""
    return json.dumps(json_safe(obj), allow_nan=False)


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Atomically write a safetensors file (metadata values must be strings)."""
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    payload = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    # safetensors 0.8.0 writes an unreadable header for no tensors + an empty metadata dict
    data = st_save_bytes(payload, metadata=meta if (meta or payload) else None)
    return atomic_write_bytes(path, _sorted_metadata(data) if len(meta) > 1 else data)


def _sorted_metadata(data: bytes) -> bytes:
    """safetensors writes the metadata in hash order (a new order on every save); sort it so the same
    tensors and metadata always give the same bytes (manifests, digests, bit-identity checks)."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    meta = header.pop("__metadata__", None) or {}
    ordered = json.dumps({"__metadata__": dict(sorted(meta.items())), **header}, separators=(",", ":"),
                         ensure_ascii=False).encode("utf-8")
    if len(ordered) > length:  # never expected (same content, same escaping); keep safetensors' bytes
        return data
    return data[:8] + ordered + b" " * (length - len(ordered)) + data[8 + length :]


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a whole safetensors file; a missing, truncated or corrupt file is a one-line error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PluginFormatError(f"{path}: cannot read ({err.strerror})") from None
    try:
        tensors = st_load_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, OSError) as err:
        raise PluginFormatError(f"{path}: not a valid safetensors file (truncated or corrupt: {err})") from None
    return tensors, dict(header.get("__metadata__") or {})


def read_text(path: str | Path, what: str, error: type[Exception] = PluginFormatError) -> str:
    """UTF-8 text of ``path``; a missing or undecodable file raises ``error`` naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None


def read_json(path: str | Path, what: str = "JSON file") -> dict:
    path = Path(path)
    text = read_text(path, what)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise PluginFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise PluginFormatError(f"{path}: expected a JSON object at top level, got {type(obj).__name__}")
    return obj


def sha256_of_file(path: str | Path) -> str:
    """sha256 of one file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
