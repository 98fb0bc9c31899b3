"""What a person's sign-off on an intake registration causes: one ``ehr_write`` command per draft.

WHY: approving the ``intake.eligible`` item ("Write the Patient and Coverage to the EHR")
closed the item and nothing else, so a registration reached the EHR only if someone typed
it in again (issue 12). The drafts themselves are never written unsigned (an intake Patient
has no draft status in FHIR, review s18 M4); the signed command is what the EHR write-back
(``streams/commands/ehr_write.py``) writes, idempotent, audited, with ``If-Match``, and
answers on ``cmd.results``. A failed or impossible write opens a front-desk item
(``processors/ehr/unwritten.py``).

The executor writes a signed Patient before its Coverage (whose beneficiary refers to it). Command ids
derive from the decision id and the draft id, so a replayed decision re-emits the same ids
and the executor writes each at most once. A rejected item emits nothing.
"""

from __future__ import annotations

from typing import Final

from practiceflow.processors.workflows.commands import signed_ehr_write
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict, WorkflowCommandDict

WORKFLOW: Final = "intake"
SIGNED_KINDS: Final = ("intake.eligible",)  # the items whose options write the registration
SIGNING_OPTIONS: Final = frozenset({"approve", "edit"})
PAYLOAD_TYPE: Final = "fhir.registration.sign"


def intake_follow_up(item: HandoffItemDict, decision: StaffDecisionDict) -> StepResult:
    """The ``ehr_write`` commands for a signed registration, or nothing (see the module docstring)."""
    if (
        item.get("state") != "done"
        or decision["option"] not in SIGNING_OPTIONS
        or item.get("kind") not in SIGNED_KINDS
        or not item.get("draft_ids")
    ):
        return EMPTY
    draft_ids = list(item.get("draft_ids") or [])  # the step lists the Patient first
    commands: list[WorkflowCommandDict] = []
    audit: list[AuditReason] = []
    for draft_id in draft_ids:
        command = signed_ehr_write(item, decision, draft_id, workflow=WORKFLOW, payload_type=PAYLOAD_TYPE)
        commands.append(command)
        audit.append(
            AuditReason(
                "ehr_write_requested",
                "Draft",
                draft_id,
                f"registration signed by {decision['actor']} ({decision['option']}); queued for the EHR write-back",
                details={"command_id": command["command_id"], "decision_id": decision["decision_id"]},
            )
        )
    return StepResult(commands=tuple(commands), audit=tuple(audit))


__all__ = ["intake_follow_up"]
