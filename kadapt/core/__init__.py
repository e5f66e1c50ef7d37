"""Contracts and what every layer uses: backbone, plug-in, objective, family registry, model, paths, errors, file I/O. Imports nothing outside ``kadapt.core``."""
