"""Plug-in families, one folder each. Importing this package registers every built-in family."""
from kadapt.plugins import jaket, kadapter, trelm, xlmk  # noqa: F401

#: the README's column order and names
_TABLE_FAMILIES = {"K-Adapter": "kadapter", "XLM-K": "xlmk", "TRELM": "trelm", "JAKET": "jaket"}


def encoder_support_table() -> str:
    """The README table of which encoders work with which family, from the architecture registry and
    each family's ``Plugin.backbone_needs``."""
    from kadapt.core.architectures import support_table
    from kadapt.core.family import plugin_class

    return support_table({label: plugin_class(kind).backbone_needs for label, kind in _TABLE_FAMILIES.items()})
