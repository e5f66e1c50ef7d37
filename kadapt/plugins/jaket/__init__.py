"""JAKET (Yu et al., AAAI 2022): entity context memory + composition GAT + LM2 re-entry."""
from kadapt.plugins.jaket import kg_entity_classification, kgqa, objectives  # noqa: F401  (register heads)
from kadapt.plugins.jaket.memory import (
    EntityMemory,
    encode_descriptions,
    refresh_interval,
)
from kadapt.plugins.jaket.plugin import JaketConfig, JaketPlugin

__all__ = ["EntityMemory", "JaketConfig", "JaketPlugin", "encode_descriptions", "refresh_interval"]
