"""Heads whose records carry entity mentions: they ask the model for its entity linking when bound."""
from __future__ import annotations


class LinksMentions:
    """Mixin for an :class:`~kadapt.core.objective.Objective` that encodes ``token_entities`` when a plug-in of
    the model links entity mentions (JAKET); ``linking`` stays ``None`` otherwise."""

    linking = None

    def bind(self, model) -> None:
        """Encode ``token_entities`` when a plug-in of ``model`` links entity mentions."""
        self.linking = model.entity_linking()

    def prepare_records(self, records: list, split: str, seed: int) -> list:
        """Start the linking statistics of ``split``; the records themselves pass unchanged."""
        if self.linking is not None:
            self.linking.start(split)
        return records
