"""The ``intake`` workflow: an intake form -> insurance eligibility -> front-desk work or registration drafts.

Pure steps (:mod:`.step`): ``on_intake`` turns an ``IntakeForm`` into an ``eligibility``
command carrying an X12 270 (``processors/x12/build270.py``); ``on_result`` turns the
executor's ``CommandResult`` (the 271, or why there is none) into exactly one outcome —
eligible, not eligible or could not determine (:mod:`.eligibility`) — and its work items:
coverage gaps for the front desk with the 271 evidence, or, when clean, Patient and
Coverage FHIR drafts (:mod:`.drafts`) and the visit routed to its provider. Rules are data
in ``rules/intake/`` (:mod:`.rules`). The shell is ``streams/workflows/intake.py``; the
executor ``streams/commands/eligibility.py``; the clearinghouse connectors ``sinks/clearinghouse/``.
"""

from practiceflow.processors.workflows.intake.rules import WORKFLOW, IntakeRules, load_intake_rules
from practiceflow.processors.workflows.intake.step import OUTCOME_OF_KIND, IntakeContext, on_intake, on_result

__all__ = ["OUTCOME_OF_KIND", "WORKFLOW", "IntakeContext", "IntakeRules", "load_intake_rules", "on_intake", "on_result"]
