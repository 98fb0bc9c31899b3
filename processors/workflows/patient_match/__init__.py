"""The ``patient_match`` workflow: an input whose patient matching could not decide goes to a person.

Matching itself is :mod:`practiceflow.processors.context.matching`. This workflow turns an
*ambiguous* answer into a front-desk work item (kind ``patient_match.ambiguous``) with the
candidates and their scores as evidence and one option per candidate (``pick``) plus
``new_patient``. Nothing is merged or filed until a person picks. A clear match or a new
patient produces no item (the calling workflow goes on with the answer).
"""

from practiceflow.processors.workflows.patient_match.step import WORKFLOW, MatchEvent, load_match_rules, step

__all__ = ["WORKFLOW", "MatchEvent", "load_match_rules", "step"]
