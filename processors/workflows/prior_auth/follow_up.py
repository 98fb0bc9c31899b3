"""What a clinician's sign-off on a prior-auth item causes: a billing-queue item to submit it.

Approving (or editing, then signing) a ``prior_auth.sign_off`` item must get the request to
the payer; closing the item alone would leave the clinician believing it went out while the
patient's MRI or oxygen waits for an authorization nobody asked for. practiceflow has no
payer connection (no PAS endpoint, no 278 clearinghouse route), so the honest follow-up is
a person: a new work item in the **billing** queue (the prior-auth / billing coordinator)
"Submit the signed prior-authorization request to <payer>", carrying the signed drafts (PAS
Bundle, 278, letter) as ``draft_ids`` and evidence, and the authorization id (the 278's TRN,
by which the payer's answer finds the authorization again).

An ``edit`` decision carrying the letter's new text (``edits["body"]``, or ``letter``) is what
the clinician signed, so that letter must be what billing submits (review s19 M2: the edit
lived only in the decision and the coordinator got the unedited draft PDF "as signed"). The
follow-up renders the edited text with the same deterministic PDF writer as a new ``Draft``
(status ``approved``, id derived from the authorization and the decision id), puts it in the
submit item's ``draft_ids`` in place of the drafted letter, and carries the text itself as
evidence. An edit that leaves the letter alone says so on the item.

Pure. A rejected item yields nothing. The new item's and letter's ids come from the
authorization and the decision id, so a replayed decision rewrites the same item and draft
(and :func:`decide` already skips a decision the item carries).
"""

from __future__ import annotations

from typing import Final

from practiceflow.processors.workflows.commands import draft_id_for
from practiceflow.processors.workflows.prior_auth import letter
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.schemas.typed import DraftDict, EvidenceDict, HandoffItemDict, StaffDecisionDict

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
LETTER_KIND: Final = "letter.medical_necessity"
LETTER_EDIT_FIELDS: Final = ("body", "letter")  # `practiceflow queue edit --edit body=<the letter's text>`


def submit_subject(practice_id: str, authorization_id: str, decision_id: str) -> tuple[str, ...]:
    """The submit item's subject (its id is ``item_id_for(WORKFLOW, *subject)``): one per signing decision.

    WHY a function: the prior-auth step derives the same id to find the billing office's item
    again when the order is cancelled or a faxed decision arrives (review s19 S2)."""
    return ("submit", practice_id, authorization_id, decision_id)


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
    drafted = list(item.get("draft_ids") or [])
    kind_of = {draft_id_for(WORKFLOW, k, pid, aid): k for k in DRAFT_KINDS}
    edited = sorted(decision.get("edits") or {})
    signed = f"signed by {decision['actor']} ({decision['option']}" + (
        f", edited: {', '.join(edited)})" if edited else ")"
    )
    new_letter = edited_letter(item, decision, aid) if decision["option"] == "edit" else None
    letter_ids = [d for d in drafted if kind_of.get(d) == LETTER_KIND]
    if new_letter is not None:
        kind_of[new_letter["draft_id"]] = LETTER_KIND
        # the edited letter replaces the drafted one: billing must never submit the unsigned text
        draft_ids = [d for d in drafted if d not in letter_ids] + [new_letter["draft_id"]]
    else:
        draft_ids = drafted
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
    if new_letter is not None:
        ev.insert(
            1,
            evidence(
                "letter of medical necessity as the clinician signed it (submit this text)",
                record_type="Draft",
                record_key=new_letter["draft_id"],
                value=LETTER_KIND,
                excerpt=letter_text(decision),
            ),
        )
        note = (
            f" Submit the clinician's edited letter (draft {new_letter['draft_id']}; its text is in the evidence), "
            "not the drafted one."
        )
    elif decision["option"] == "edit" and letter_ids:
        note = " The edit left the letter as drafted."
    else:
        note = ""
    submit = new_item(
        practice_id=pid,
        workflow=WORKFLOW,
        subject=submit_subject(pid, aid, decision["decision_id"]),
        kind=SUBMIT_KIND,
        queue=SUBMIT_QUEUE,
        title=f"Submit the signed prior-authorization request to {payer}",
        what_happened=(
            f"The clinician signed the prior-authorization drafts ({signed}) of item {item['item_id']}. "
            "practiceflow does not send them to the payer: submit them on the payer's portal or "
            f"through the clearinghouse, quoting authorization id {aid}.{note}"
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
        details={
            "authorization_id": aid,
            "decision_id": decision["decision_id"],
            "sign_off_item": item["item_id"],
            **({"edited_letter": new_letter["draft_id"]} if new_letter else {}),
        },
    )
    return StepResult(work_items=(submit,), drafts=(new_letter,) if new_letter else (), audit=(audit,))


def letter_text(decision: StaffDecisionDict) -> str | None:
    """The letter's text from an edit decision (``body``, or ``letter``), None when it has none."""
    edits = decision.get("edits") or {}
    for field in LETTER_EDIT_FIELDS:
        text = (edits.get(field) or "").strip()
        if text:
            return text
    return None


def edited_letter(item: HandoffItemDict, decision: StaffDecisionDict, aid: str) -> DraftDict | None:
    """The signed letter rendered from the clinician's edited text, or None when the edit has none.

    Same PDF writer as the drafted letter (:mod:`.letter`), dated by the decision, with an id
    from the authorization and the decision id: a replayed decision yields the same bytes and id.
    """
    text = letter_text(decision)
    if text is None:
        return None
    pid = item["practice_id"]
    now = decision["decided_at"]
    pdf = letter.render_pdf(text, title=f"Letter of medical necessity (authorization {aid})", now_ms=now)
    return {
        "practice_id": pid,
        "draft_id": draft_id_for(WORKFLOW, LETTER_KIND, pid, aid, decision["decision_id"]),
        "item_id": item["item_id"],
        "workflow": WORKFLOW,
        "kind": LETTER_KIND,
        "content_type": "application/pdf",
        "body": letter.pdf_body(pdf),
        "document_uri": None,
        "patient_id": item.get("patient_id"),
        "status": "approved",  # the clinician signed exactly this text
        "produced_by": by_rule(
            "prior_auth.letter.edited", "1", f"clinician's edit, decision {decision['decision_id']}"
        ),
        "created_at": now,
        "source": item.get("source"),
    }


__all__ = [
    "edited_letter",
    "letter_text",
    "prior_auth_follow_up",
    "request_evidence",
    "submit_subject",
    "SUBMIT_KIND",
    "SUBMIT_QUEUE",
]
