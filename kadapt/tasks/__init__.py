"""Downstream task heads. Each task is an :class:`kadapt.objectives.Objective` registered under its
name, so fine-tune recipes select it with ``objective.name``. Importing this package registers them.
"""
from kadapt.tasks import (  # noqa: F401  # noqa: F401
    extractive_qa,
    lama_probe,
    multiple_choice,
    sentence_classification,
    token_classification,
)
