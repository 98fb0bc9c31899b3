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
NOT_WRITTEN: Final = frozenset({"failed", "refused"})
RULE_ID: Final = "ehr.write_not_done"
RULE_VERSION: Final = "1"


def unwritten_write_item(result: Mapping[str, Any]) -> StepResult:
    """The clinician item for an ``ehr_write`` answer that is not ``ok``; nothing otherwise."""
    if result.get("kind") != KIND or result.get("outcome") not in NOT_WRITTEN:
        return EMPTY
    command_id = str(result["command_id"])
    params: Mapping[str, Any] = result.get("params") or {}
    draft_id = params.get("draft_id")
    reason = str(result.get("reason") or "no reason given")
    workflow = str(result.get("workflow") or "refill")
    item = new_item(
        practice_id=result["practice_id"],
        workflow=workflow,
        subject=["ehr_write", command_id],
        kind=f"{workflow}.ehr_write_not_done",
        queue="clinician",
        priority="high",
        title="Signed renewal NOT written to the EHR: prescribe it by hand",
        what_happened=f"The EHR write-back answered {result.get('outcome')}: {reason}",
        decision_needed="Enter the signed order in the EHR yourself, then mark this done.",
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
            evidence("reason", value=reason),
        ],
        options=[option("acknowledge", "Prescribed in the EHR by hand"), option("escalate", "Escalate")],
    )
    audit = AuditReason(
        "ehr_write_not_done",
        "WorkflowCommand",
        command_id,
        f"{RULE_ID}@{RULE_VERSION}: answer {result.get('outcome')}; a clinician item asks for it by hand",
        outcome="failed",
    )
    return StepResult(work_items=(item,), audit=(audit,))


__all__ = ["unwritten_write_item"]
