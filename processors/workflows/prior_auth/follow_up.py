"""What a clinician's sign-off on a prior-auth item causes: a billing-queue item to submit it.

Approving (or editing, then signing) a ``prior_auth.sign_off`` item must get the request to
the payer; closing the item alone would leave the clinician believing it went out while the
patient's MRI or oxygen waits for an authorization nobody asked for. practiceflow has no
payer connection (no PAS endpoint, no 278 clearinghouse route), so the honest follow-up is
a person: a new work item in the **billing** queue (the prior-auth / billing coordinator)
"Submit the signed prior-authorization request to <payer>", carrying the signed drafts (PAS
Bundle, 278, letter) as ``draft_ids`` and evidence, and the authorization id (the 278's TRN,
by which the payer's answer finds the authorization again).

Pure. A rejected item yields nothing. The new item's id comes from the authorization and the
decision id, so a replayed decision rewrites the same item (and :func:`decide` already skips
a decision the item carries).
"""

from __future__ import annotations

from typing import Final

from practiceflow.processors.workflows.commands import draft_id_for
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.schemas.typed import EvidenceDict, HandoffItemDict, StaffDecisionDict

WORKFLOW: Final = "prior_auth"
SIGN_OFF_KIND: Final = f"{WORKFLOW}.sign_off"
SUBMIT_KIND: Final = f"{WORKFLOW}.submit"
SUBMIT_QUEUE: Final = "billing"  # processors/workflows/workitem.py QUEUES: payer correspondence
SIGNING_OPTIONS: Final = frozenset({"approve", "edit"})
REQUEST_EVIDENCE: Final = "authorization request"  # the sign-off item's evidence naming payer + id
DRAFT_KINDS: Final = {
    "fhir.Bundle.pas": "Da Vinci PAS request Bundle",
    "x12.278": "X12 278 request",
    "letter.medical_necessity": "letter of medical necessity (PDF)",
}


def request_evidence(authorization_id: str, payer_name: str) -> EvidenceDict:
    """The sign-off item's machine-readable pointer to its authorization and payer (read back below)."""
    return evidence(
        REQUEST_EVIDENCE,
        record_type="PriorAuthorization",
        record_key=authorization_id,
        value=payer_name,
        excerpt=f"{payer_name}; authorization {authorization_id}",
    )


def _request(item: HandoffItemDict) -> tuple[str, str]:
    for e in item.get("evidence") or []:
        if e.get("label") == REQUEST_EVIDENCE and e.get("record_key"):
            return str(e["record_key"]), str(e.get("value") or "the payer named on the drafts")
    # an item drafted before the evidence existed: the id is derived (step.authorization_id)
    from practiceflow.processors.workflows.prior_auth.step import authorization_id

    aid = authorization_id(item["practice_id"], str(item.get("patient_id") or ""), str(item.get("subject_id") or ""))
    return aid, "the payer named on the drafts"


def prior_auth_follow_up(item: HandoffItemDict, decision: StaffDecisionDict) -> StepResult:
    """The coordinator's "submit it" item for a signed sign-off item, or nothing."""
    if (
        item.get("kind") != SIGN_OFF_KIND
        or item.get("state") != "done"
        or decision["option"] not in SIGNING_OPTIONS
        or not item.get("draft_ids")
    ):
        return EMPTY
    pid = item["practice_id"]
    aid, payer = _request(item)
    draft_ids = list(item.get("draft_ids") or [])
    kind_of = {draft_id_for(WORKFLOW, k, pid, aid): k for k in DRAFT_KINDS}
    edited = sorted(decision.get("edits") or {})
    signed = f"signed by {decision['actor']} ({decision['option']}" + (
        f", edited: {', '.join(edited)})" if edited else ")"
    )
    ev = [
        request_evidence(aid, payer),
        *(
            evidence(
                f"signed draft: {DRAFT_KINDS.get(kind_of.get(d, ''), 'draft')}",
                record_type="Draft",
                record_key=d,
                value=kind_of.get(d),
                excerpt=f"{kind_of.get(d) or 'draft'} {d}, {signed}",
            )
            for d in draft_ids
        ),
    ]
    submit = new_item(
        practice_id=pid,
        workflow=WORKFLOW,
        subject=("submit", pid, aid, decision["decision_id"]),
        kind=SUBMIT_KIND,
        queue=SUBMIT_QUEUE,
        title=f"Submit the signed prior-authorization request to {payer}",
        what_happened=(
            f"The clinician signed the prior-authorization drafts ({signed}) of item {item['item_id']}. "
            "practiceflow does not send them to the payer: submit them on the payer's portal or "
            f"through the clearinghouse, quoting authorization id {aid}."
        ),
        produced_by=by_rule("prior_auth.submit", "1", "clinician sign-off (prior_auth/follow_up.py)"),
        source=item["source"],
        now=decision["decided_at"],
        priority=item.get("priority") or "routine",
        patient_id=item.get("patient_id"),
        subject_type=item.get("subject_type"),
        subject_id=item.get("subject_id"),
        decision_needed="Submit the signed drafts to the payer, then mark it submitted.",
        proposed_action=f"Submit the PAS request / 278 and the letter to {payer}.",
        evidence=ev,
        options=[
            option("approve", f"Submitted to {payer}"),
            option("reject", "Could not submit (say why; the clinician is told)"),
        ],
        draft_ids=draft_ids,
    )
    audit = AuditReason(
        "prior_auth_submission_requested",
        "HandoffItem",
        submit["item_id"],
        f"prior-auth drafts {signed}; queued for the {SUBMIT_QUEUE} queue to submit",
        details={"authorization_id": aid, "decision_id": decision["decision_id"], "sign_off_item": item["item_id"]},
    )
    return StepResult(work_items=(submit,), audit=(audit,))


__all__ = ["prior_auth_follow_up", "request_evidence", "SUBMIT_KIND", "SUBMIT_QUEUE"]
