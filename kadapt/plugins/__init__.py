"""Plug-in families, one folder each. Importing this package registers every built-in family."""
from kadapt.plugins import jaket, kadapter, trelm, xlmk  # noqa: F401
