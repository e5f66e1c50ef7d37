"""Plug-in families. Importing this package registers every built-in family."""
from kadapt.plugins.base import Plugin, PluginConfig
from kadapt.plugins.registry import build_plugin, plugin_class, register_plugin, registered_kinds
from kadapt.plugins import kadapter  # noqa: F401  (registers "kadapter")
from kadapt.plugins import trelm  # noqa: F401,E402  (registers "trelm")
from kadapt.plugins import jaket  # noqa: F401  (registers "jaket")
from kadapt.plugins import xlmk  # noqa: F401  (registers "xlmk")

__all__ = ["Plugin", "PluginConfig", "build_plugin", "plugin_class", "register_plugin", "registered_kinds"]
