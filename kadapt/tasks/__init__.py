"""Family-agnostic downstream task heads (and the infusion heads K-Adapter uses). Each is an
:class:`kadapt.core.objective.Objective` registered under its name, so recipes select it with
``objective.name``. Importing this package registers them.
"""
from kadapt.tasks import (  # noqa: F401
    entity_typing,
    extractive_qa,
    fewshot_pair,
    lama_probe,
    multiple_choice,
    open_domain_qa,
    relation_classification,
    relation_semeval,
    relation_tacred,
    sentence_classification,
    token_classification,
)
