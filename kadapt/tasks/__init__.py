"""Downstream task heads. Each task is an :class:`kadapt.objectives.Objective` registered under its
name, so fine-tune recipes select it with ``objective.name``. Importing this package registers them.
"""
from kadapt.tasks import (  # noqa: F401
    entity_typing,
    extractive_qa,
    fewshot_pair,
    kg_entity_classification,
    kgqa,
    lama_probe,
    multiple_choice,
    open_domain_qa,
    relation_semeval,
    relation_tacred,
    sentence_classification,
    token_classification,
)
