"""A signed EHR write that did not happen -> a work item, so a person does it by hand.

WHY: the refill item is already ``done`` when the clinician signs; the ``cmd.ehr_write``
command's answer (``cmd.results``, from ``practiceflow ehr sync``) is the only place that says
whether the renewal reached the EHR. A ``failed`` or ``refused`` answer that nobody reads means
the clinician believes the patient's renewal was prescribed while it was not (review s18 M6).
Pure: the handler in ``streams/workflows/ehr_results.py`` feeds it each answer.

The item id derives from the command id, so a write that fails at every sync (each answered
again) is one item, not one per sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option

KIND: Final = "ehr_write"
# ``no_ehr``: the practice has no EHR target (setting ``ehr_fhir``); the worker answers the
# command so (``streams/commands/ehr_none.py``) and the sync never writes it later.
NO_EHR: Final = "no_ehr"
# ``unknown``: the sync could not tell whether the signed write reached the EHR (review s20 M2: an
# EHR that drops our note and has no readable history); a person checks, never "prescribe it by hand".
UNPROVEN: Final = "unknown"
NOT_WRITTEN: Final = frozenset({"failed", "refused", NO_EHR, UNPROVEN})
BACKLOG: Final = "issued_before_cutoff"  # params key of a no_ehr answer to the upgrade's backlog: no item
# workflow -> (queue, title, what the person does): the one who signed does it by hand
WHO_DOES_IT: Final[dict[str, tuple[str, str, str]]] = {
    "refill": (
        "clinician",
        "Signed renewal NOT written to the EHR: prescribe it by hand",
        "Enter the signed order in the EHR yourself, then mark this done.",
    ),
    "intake": (
        "front_desk",
        "Signed registration NOT written to the EHR: enter it by hand",
        "Enter the signed Patient / Coverage in the EHR yourself (the draft is attached), then mark this done.",
    ),
    # the payer's authorization number onto the order (administrative: the billing office, who puts
    # the same number on the claim): an HL7 order, an order the EHR does not hold, no EHR target
    "prior_auth": (
        "billing",
        "Authorization number NOT attached to the order in the EHR: enter it by hand",
        "Enter the payer's authorization number (evidence) on the order in the EHR yourself, then mark this done.",
    ),
}
# workflow -> (title, what the person does) of an ``unknown`` answer: the order may be in the EHR already
CHECK_FIRST: Final[dict[str, tuple[str, str]]] = {
    "refill": (
        "Signed renewal: could not tell whether it reached the EHR - check for an active order before prescribing",
        # review s20 N6: a copy that staff stopped, completed or put on hold means the order WAS issued and
        # then changed on purpose; only when the EHR has no copy of this order at all is it entered by hand
        "Look for this renewal's order in the EHR. Active: mark this done. Stopped, completed, on hold or "
        "cancelled there: staff changed it on purpose; do not prescribe it again, mark this done. Only if the "
        "EHR has no such order at all, prescribe it by hand, then mark this done.",
    ),
}
RULE_ID: Final = "ehr.write_not_done"
RULE_VERSION: Final = "1"


def unwritten_write_item(result: Mapping[str, Any]) -> StepResult:
    """The item for an ``ehr_write`` answer that is not ``ok`` (to the queue of whoever signed:
    clinician for a renewal, front desk for a registration); nothing otherwise. An ``unknown``
    answer's item asks to check the EHR first: the order may be there (review s20 M2)."""
    if result.get("kind") != KIND or result.get("outcome") not in NOT_WRITTEN:
        return EMPTY
    command_id = str(result["command_id"])
    params: Mapping[str, Any] = result.get("params") or {}
    if result.get("outcome") == NO_EHR and params.get(BACKLOG):
        return EMPTY  # the upgrade's backlog (processors/ehr/no_target.py): entered by hand back then
    draft_id = params.get("draft_id")
    reason = str(result.get("reason") or "no reason given")
    workflow = str(result.get("workflow") or "refill")
    queue, title, decision_needed = WHO_DOES_IT.get(workflow, WHO_DOES_IT["refill"])
    if result.get("outcome") == NO_EHR:
        title = title.replace("NOT written to the EHR", "NOT written: no EHR is configured")
    if result.get("outcome") == UNPROVEN:
        title, decision_needed = CHECK_FIRST.get(
            workflow,
            (
                "Signed write: could not tell whether it reached the EHR - check the EHR before entering it",
                "Look for the signed record in the EHR. If it is there, mark this done; if not, enter it by hand.",
            ),
        )
    item = new_item(
        practice_id=result["practice_id"],
        workflow=workflow,
        subject=["ehr_write", command_id],
        kind=f"{workflow}.ehr_write_not_done",
        queue=queue,
        priority="high",
        title=title,
        what_happened=f"The EHR write-back answered {result.get('outcome')}: {reason}",
        decision_needed=decision_needed,
        produced_by=by_rule(RULE_ID, RULE_VERSION, "ehr write-back"),
        source={"feed": "cmd.results", "message_id": command_id},
        now=int(result["completed_at"]),
        evidence=[
            evidence("command", value=command_id),
            *(
                [evidence("draft", record_type="Draft", record_key=str(draft_id), value=str(draft_id))]
                if draft_id
                else []
            ),
            *(
                [
                    evidence(
                        "order",
                        record_type=str(params.get("order_type") or "Order"),
                        record_key=str(params.get("order_id") or ""),
                        value=str(params.get("order_id") or ""),
                    ),
                    evidence("authorization number", value=str(params["authorization_number"])),
                ]
                if params.get("authorization_number")
                else []
            ),
            evidence("reason", value=reason),
        ],
        options=[option("acknowledge", "Entered in the EHR by hand"), option("escalate", "Escalate")],
    )
    audit = AuditReason(
        "ehr_write_not_done",
        "WorkflowCommand",
        command_id,
        f"{RULE_ID}@{RULE_VERSION}: answer {result.get('outcome')}; a {queue} item asks for it by hand",
        outcome="failed",
    )
    return StepResult(work_items=(item,), audit=(audit,))


__all__ = ["unwritten_write_item"]
