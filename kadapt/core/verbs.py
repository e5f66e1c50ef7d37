"""The Hugging Face verbs of :class:`~kadapt.core.model.KnowledgeModel` and
:class:`~kadapt.core.plugin.Plugin` (``from_pretrained``, ``save_pretrained``, ``push_to_hub``, raw-text
``predict``, ``fit``) are implemented above core -- they need plug-in folders and the Hub
(:mod:`kadapt.store`), fine-tuned runs and the training loop (:mod:`kadapt.runs`). Those modules register
their implementations here when ``kadapt`` is imported (:mod:`kadapt.runs.pretrained`), so the core
classes offer the verbs without importing upwards (core stays the bottom layer).
"""
from __future__ import annotations

from collections.abc import Callable

from kadapt.core.errors import KadaptError

_VERBS: dict[str, Callable] = {}


def register_verbs(**functions: Callable) -> None:
    """``register_verbs(model_from_pretrained=f, ...)``: the implementation of each named verb."""
    _VERBS.update(functions)


def verb(name: str) -> Callable:
    """The registered implementation of ``name`` (registered by ``import kadapt``)."""
    try:
        return _VERBS[name]
    except KeyError:
        raise KadaptError(f"{name} is not available: import kadapt (the package) to register the "
                          "Hugging Face verbs") from None
