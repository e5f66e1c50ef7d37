"""Error types raised by kadapt. Every message names the file (and line or key) at fault."""
from __future__ import annotations


class KadaptError(Exception):
    """Base class for all errors kadapt raises on purpose."""


class DataError(KadaptError, ValueError):
    """A data file is malformed. Always names ``path`` and, when known, ``line``."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class PluginFormatError(KadaptError, ValueError):
    """A plug-in directory or file does not match the plug-in format (README "Plug-in format")."""


class FingerprintMismatchError(PluginFormatError):
    """A plug-in was trained on a different backbone than the one it is being loaded on."""


class RecipeError(KadaptError, ValueError):
    """A recipe file is invalid (unknown key, wrong type, unresolvable path)."""


class RegistryError(KadaptError, ValueError):
    """A family, objective or data format clashes with one already registered (nothing is registered)."""


class ArchitectureError(KadaptError, ValueError):
    """A backbone's architecture cannot serve what was asked (not an encoder, or a family needs layers /
    FFN blocks kadapt cannot run exactly on it). The message names the model type and what is missing."""


class LayerRunnerMismatchError(ArchitectureError):
    """The layer-by-layer path disagrees with the model's own forward (self-check at first use)."""
