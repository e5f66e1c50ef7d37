"""The package version (kept here so every layer can read it without importing ``kadapt``)."""
__version__ = "0.1.0"
