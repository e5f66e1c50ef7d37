"""Infusion objectives and task heads. Importing registers the built-ins."""
from kadapt.objectives.base import (Objective, ObjectiveOutput, build_objective, objective_class,
                                    register_objective, registered_objectives)
from kadapt.objectives import dependency_head, relation_classification  # noqa: F401
from kadapt.objectives import trelm_knowledge  # noqa: F401,E402  (TRELM CKA + MLM)
from kadapt.objectives import xlmk  # noqa: F401,E402  (registers "xlmk_contrastive")
import kadapt.tasks  # noqa: F401,E402  (registers the downstream task heads)

__all__ = ["Objective", "ObjectiveOutput", "build_objective", "objective_class", "register_objective",
           "registered_objectives"]
