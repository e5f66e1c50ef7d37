"""``kind`` → plug-in class registry (like PEFT's ``register_peft_method``): no if-chains on kind."""
from __future__ import annotations

from collections.abc import Mapping

from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import PluginFormatError
from kadapt.core.plugin import Plugin, PluginConfig

_PLUGINS: dict[str, type[Plugin]] = {}


def register_plugin(cls: type[Plugin]) -> type[Plugin]:
    """Class decorator: make a plug-in family available under ``cls.kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} must set a non-empty `kind`")
    if cls.kind in _PLUGINS and _PLUGINS[cls.kind] is not cls:
        raise ValueError(f"plug-in kind {cls.kind!r} already registered by {_PLUGINS[cls.kind].__name__}")
    _PLUGINS[cls.kind] = cls
    return cls


def registered_kinds() -> list[str]:
    return sorted(_PLUGINS)


def plugin_class(kind: str, source: str = "kind") -> type[Plugin]:
    try:
        return _PLUGINS[kind]
    except KeyError:
        raise PluginFormatError(f"{source}: unknown plug-in kind {kind!r}; known kinds: {registered_kinds()}") from None


def build_plugin(
    kind: str, config: PluginConfig | Mapping | None, spec: BackboneSpec, source: str = "config"
) -> Plugin:
    """Instantiate a registered plug-in from a config object or a plain dict."""
    cls = plugin_class(kind, source)
    if config is None:
        config = cls.config_class()
    elif not isinstance(config, PluginConfig):
        config = cls.config_class.from_dict(config, source=source)
    elif not isinstance(config, cls.config_class):
        raise PluginFormatError(
            f"{source}: config of type {type(config).__name__} given for kind {kind!r} "
            f"(expects {cls.config_class.__name__})"
        )
    return cls(config, spec)
