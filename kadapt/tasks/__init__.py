"""Downstream task heads. Each task is an :class:`kadapt.objectives.Objective` registered under its
name, so fine-tune recipes select it with ``objective.name``. Importing this package registers them.
"""
from kadapt.tasks import entity_typing, fewshot_pair, relation_semeval, relation_tacred  # noqa: F401
