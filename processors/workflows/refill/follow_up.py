"""What a clinician's sign-off on a refill item causes: one ``ehr_write`` command.

Approving (or editing, then signing) a routine refill item must put the renewal into the
EHR; closing the item alone would leave the clinician believing the prescription went
out while the patient gets nothing. The follow-up turns the decision into a
WorkflowCommand on ``cmd.ehr_write`` whose payload names the signed draft (the
MedicationRequest drafted by :mod:`.step`) and the clinician's edits; the EHR write-back
executor (issue 12) reads the draft by id, applies the edits and writes it. Until that
executor runs, the commands wait on the topic; nothing is lost.

Only items that carry a draft are written back: an approved needs_review / needs_visit
item says "prescribe in the EHR", i.e. the clinician prescribes there by hand. A rejected
item emits nothing. The command id comes from the decision id and the draft id, so a
replayed decision re-emits the same id and the executor writes it at most once.
"""

from __future__ import annotations

from typing import Final

from practiceflow.processors.workflows.commands import signed_ehr_write
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict

WORKFLOW: Final = "refill"
PAYLOAD_TYPE: Final = "fhir.MedicationRequest.sign"
SIGNING_OPTIONS: Final = frozenset({"approve", "edit"})


def refill_follow_up(item: HandoffItemDict, decision: StaffDecisionDict) -> StepResult:
    """The ``ehr_write`` command for a signed renewal draft, or nothing (see the module docstring)."""
    if item.get("state") != "done" or decision["option"] not in SIGNING_OPTIONS:
        return EMPTY
    chosen = next((o for o in item.get("options") or [] if o["option"] == decision["option"]), None)
    target = chosen.get("target") if chosen is not None else None
    draft_id = target or next(iter(item.get("draft_ids") or []), None)
    if not draft_id:
        return EMPTY  # no draft: the clinician prescribes in the EHR by hand
    command = signed_ehr_write(
        item, decision, draft_id, workflow=WORKFLOW, payload_type=PAYLOAD_TYPE, draft_kind="fhir.MedicationRequest"
    )
    audit = AuditReason(
        "ehr_write_requested",
        "Draft",
        draft_id,
        f"renewal signed by {decision['actor']} ({decision['option']}); queued for the EHR write-back",
        details={"command_id": command["command_id"], "decision_id": decision["decision_id"]},
    )
    return StepResult(commands=(command,), audit=(audit,))


__all__ = ["refill_follow_up", "PAYLOAD_TYPE"]
