"""The ``kadapt`` command (a thin layer over the library's public functions)."""
from kadapt.cli.app import main

__all__ = ["main"]
