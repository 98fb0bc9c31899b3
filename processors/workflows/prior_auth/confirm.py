"""A person's confirmation of a faxed payer decision, carried to the authorization (review s19 S4).

Most faxed decisions are evidence only (:func:`.faxed.on_fax_decision`: a language model
touched it, it names no request or more than one, the request was not submitted yet). A
person then reads the fax on its own **billing** item (processors/workflows/fax). Before,
that item offered only ``file`` / ``acknowledge`` and no follow-up existed for ``fax``, so
the authorization stayed ``drafted`` / ``pended`` in the table and in ClickHouse, and the
clinician's item kept "faxed payer decision, unconfirmed" for ever.

Three pure pieces, so a person's word moves the state the same way a payer's 278 does:

1. :func:`with_confirm_options` (the prior-auth agent, when it found the fax's
   authorization but did not apply the fax): the fax item's next revision offers
   ``approve`` "confirm: the payer's decision is <what the fax says>" and ``edit`` "confirm
   another decision" (``--edit decision=approved|denied|pended``, optionally
   ``authorization_number=``), both with ``target`` the authorization id, beside the
   existing ``file`` / ``acknowledge`` (which change nothing).
2. :func:`fax_follow_up` (``decisions.py`` FOLLOW_UPS ``fax``): a confirming decision on
   that item becomes a ``prior_auth`` command (``cmd.prior_auth``; id from the authorization
   and the decision id, so a replayed decision re-emits the same command).
3. :func:`confirmed_response`: the prior-auth agent turns the command into the response
   :func:`.step.respond` applies: the state, the clinician's item (or a new one), the audit
   trail and ClickHouse through the usual topics. Its ``response_id`` is the decision's, so
   it is applied once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from practiceflow.processors.workflows.commands import new_command
from practiceflow.processors.workflows.prior_auth.faxed import FAX_DECISIONS, fax_matches, same_reference
from practiceflow.processors.workflows.prior_auth.step import OPEN_STATES, respond
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.processors.workflows.workitem import END_STATES, evidence, option
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict, WorkflowCommandDict

WORKFLOW: Final = "prior_auth"
COMMAND_KIND: Final = "prior_auth"  # cmd.prior_auth, executed by the prior-auth agent itself
FAX_ITEM_KIND: Final = "fax.prior_auth_response"
CONFIRMABLE: Final = ("approved", "denied", "pended")
_ALIASES: Final = {"approve": "approved", "deny": "denied", "pending": "pended", "pend": "pended"}
AUTHORIZATION_EVIDENCE: Final = "authorization this fax is about"  # read back by fax_follow_up
CONFIRMING: Final = frozenset({"approve", "edit"})
#: the states a person's confirmation may move: the request is still waiting for the payer's word
CONFIRM_STATES: Final = OPEN_STATES


def describe(state: Mapping[str, Any]) -> str:
    """The request as a biller recognizes it: service, procedure code, status, date requested, id.

    WHY: an opaque id alone cannot tell a biller that a confirmation is about the wrong
    request (review s20 S3)."""
    created = (state.get("item") or {}).get("created_at")
    when = datetime.fromtimestamp(int(created) / 1000, UTC).date().isoformat() if created else None
    return (
        f"{state.get('service') or 'service not named'} ({state.get('code') or 'no code'}; "
        f"{state.get('status')}{f', requested {when}' if when else ''}; authorization {state['authorization_id']})"
    )


def with_confirm_options(
    fax_item: HandoffItemDict | None, state: Mapping[str, Any], faxed_decision: str, now: int
) -> HandoffItemDict | None:
    """The fax's billing item, next revision, offering to confirm the decision for this authorization.

    None when there is nothing to offer: no item, not a prior-auth response in the billing
    queue (a triage item is sorted first), already decided, already offering it, or the
    authorization is no longer waiting for the payer (cancelled, or already decided)."""
    if fax_item is None or fax_item.get("kind") != FAX_ITEM_KIND or fax_item.get("queue") != "billing":
        return None
    if fax_item.get("state", "open") in END_STATES or state.get("status") not in CONFIRM_STATES:
        return None
    aid = str(state["authorization_id"])
    if any(o.get("target") == aid for o in fax_item.get("options") or []):
        return None  # a replay: the item already offers it
    kept = [o for o in fax_item.get("options") or [] if o["option"] not in CONFIRMING]
    what = describe(state)
    options = [
        option("approve", f"Confirm: the payer's decision is {faxed_decision} for {what}", target=aid),
        option(
            "edit",
            f"Confirm another decision for {what}: decision=approved|denied|pended "
            "(and authorization_number=<the payer's number>)",
            target=aid,
            editable=["decision", "authorization_number"],
        ),
        *kept,
    ]
    pointer = evidence(
        AUTHORIZATION_EVIDENCE,
        record_type="PriorAuthorization",
        record_key=aid,
        value=faxed_decision,
        assessment=str(state.get("status") or ""),
        excerpt=f"{what}; the fax says {faxed_decision}",
    )
    return {
        **fax_item,
        "options": options,
        "evidence": [pointer, *(fax_item.get("evidence") or [])],
        "decision_needed": "Confirm the payer's decision for the authorization (it changes its state and tells "
        "the ordering clinician), or file the fax.",
        "revision": int(fax_item.get("revision", 1)) + 1,
        "updated_at": now,
    }


def offer_confirmation(
    fax_item: HandoffItemDict | None,
    state: Mapping[str, Any],
    classification: Mapping[str, Any],
    result: StepResult,
    *,
    ambiguous: bool,
    now: int,
) -> HandoffItemDict | None:
    """The fax's billing item offering the confirmation, or None: only for a fax that was seen
    now and not applied, that names this authorization alone, which still waits for the payer.

    ``result`` is :func:`.faxed.on_fax_decision`'s for this fax and ``state`` the authorization
    after it. WHY each gate:

    * ``prior_auth_fax_unconfirmed`` in ``result``: a fax that was applied, or seen before
      (the language model's revision of the same classification, a replay), must not be
      offered again: a click would send a second "approved" notice, and a mistaken
      ``edit decision=denied`` would flip an approved request (review s20 S4);
    * named alone (:func:`.faxed.fax_matches`, not ``ambiguous``): a request the software
      guessed (the only open one among several named, or the patient's only open one when the
      fax names none) must never be one click away from approved (review s20 S3); that fax's
      own item keeps file / acknowledge, and the request's own item has it as evidence;
    * drafted / pended: a cancelled or decided request is not moved by a faxed copy."""
    if not any(a.action == "prior_auth_fax_unconfirmed" for a in result.audit):
        return None
    if ambiguous or not fax_matches(state, classification):
        return None
    return with_confirm_options(fax_item, state, FAX_DECISIONS.get(str(classification.get("kind")), "other"), now)


def _pointer(item: HandoffItemDict) -> tuple[str, str] | None:
    for e in item.get("evidence") or []:
        if e.get("label") == AUTHORIZATION_EVIDENCE and e.get("record_key"):
            return str(e["record_key"]), str(e.get("value") or "")
    return None


def _reference(item: HandoffItemDict, aid: str) -> str | None:
    """The fax's reference as the payer's number, None when it is our own authorization id
    (billing is told to quote it; it is no payer number: review s20 N3)."""
    ref = next((str(e["value"]) for e in item.get("evidence") or [] if e.get("label") == "reference"), None)
    return None if same_reference(ref, aid) else ref


def fax_follow_up(item: HandoffItemDict, decision: StaffDecisionDict) -> StepResult:
    """A confirming decision on a prior-auth fax's billing item -> a ``prior_auth`` command, or nothing."""
    if item.get("kind") != FAX_ITEM_KIND or item.get("state") != "done" or decision["option"] not in CONFIRMING:
        return EMPTY
    found = _pointer(item)
    if found is None:
        return EMPTY  # an item that offered no confirmation (approve here was never about an authorization)
    aid, faxed = found
    edits = decision.get("edits") or {}
    raw = (edits.get("decision") or "").strip().lower() if decision["option"] == "edit" else faxed
    confirmed = _ALIASES.get(raw, raw)
    if confirmed not in CONFIRMABLE:
        return StepResult(
            audit=(
                AuditReason(
                    "prior_auth_confirm_refused",
                    "HandoffItem",
                    item["item_id"],
                    f"decision {raw!r} is not one of {', '.join(CONFIRMABLE)}: the authorization is unchanged",
                    outcome="refused",
                    details={"authorization_id": aid, "decision_id": decision["decision_id"]},
                ),
            )
        )
    number = (edits.get("authorization_number") or "").strip() or _reference(item, aid) or ""
    params = {
        "authorization_id": aid,
        "decision": confirmed,
        "authorization_number": number,
        "decision_id": decision["decision_id"],
        "actor": decision["actor"],
        "fax_item": item["item_id"],
    }
    cmd = new_command(
        practice_id=item["practice_id"],
        kind=COMMAND_KIND,
        workflow=WORKFLOW,
        subject=("confirm", aid, decision["decision_id"]),
        payload_type="prior_auth.confirmed_decision",
        payload=json.dumps(params, sort_keys=True),
        now=decision["decided_at"],
        item_id=item["item_id"],
        patient_id=item.get("patient_id"),
        params=params,
        source=item.get("source"),
    )
    audit = AuditReason(
        "prior_auth_confirm_requested",
        "HandoffItem",
        item["item_id"],
        f"{decision['actor']} confirmed the faxed payer decision {confirmed} for authorization {aid}",
        details={"authorization_id": aid, "decision_id": decision["decision_id"], "command_id": cmd["command_id"]},
    )
    return StepResult(commands=(cmd,), audit=(audit,))


def confirmed_response(command: Mapping[str, Any]) -> dict[str, Any]:
    """A ``prior_auth`` command as the response :func:`.step.respond` applies (once: its id is the decision's)."""
    p = command.get("params") or {}
    return {
        "response_id": f"confirm:{p['decision_id']}",
        "decision": p["decision"],
        "authorization_number": p.get("authorization_number") or None,
        "record_type": "StaffDecision",
        "source": command.get("source"),
        "messages": [f"confirmed by {p.get('actor') or 'staff'} from the faxed decision on item {p.get('fax_item')}"],
    }


def apply_confirmation(
    state: Mapping[str, Any],
    command: Mapping[str, Any],
    item: HandoffItemDict | None,
    now: int,
    *,
    submit_item: HandoffItemDict | None = None,
) -> tuple[StepResult, dict[str, Any], bool]:
    """A ``prior_auth`` command applied to its authorization: ``(result, new state, applied)``.

    Applied (:func:`.step.respond`) only while the authorization waits for the payer
    (drafted / pended). A confirmation clicked after the order was cancelled, or after a 278
    or another fax decided it, is refused with an audit event ``prior_auth_confirm_refused``
    and changes nothing (review s20 S3: a cancelled order was marked approved, an approved
    one flipped by a stale fax). Its id is recorded, so a replay adds nothing. Applied, it
    closes the billing office's open submit item ``submit_item`` as every answer does."""
    response = confirmed_response(command)
    rid = str(response["response_id"])
    if state.get("status") in CONFIRM_STATES:
        result, new_state = respond(state, response, item, now, submit_item=submit_item)
        return result, new_state, True
    if rid in (state.get("responses") or ()):
        return StepResult(), dict(state), False
    p = command.get("params") or {}
    audit = AuditReason(
        "prior_auth_confirm_refused",
        "Authorization",
        str(state["authorization_id"]),
        f"the authorization is {state.get('status')}: a confirmed faxed decision ({p.get('decision')}) no longer "
        "changes it",
        outcome="refused",
        details={"decision_id": str(p.get("decision_id")), "fax_item": str(p.get("fax_item"))},
    )
    new_state = {**state, "responses": [*(state.get("responses") or []), rid][-20:], "updated_at": now}
    return StepResult(audit=(audit,)), new_state, False


def is_confirmation(command: WorkflowCommandDict | Mapping[str, Any]) -> bool:
    return command.get("kind") == COMMAND_KIND and bool((command.get("params") or {}).get("authorization_id"))


__all__ = [
    "apply_confirmation",
    "confirmed_response",
    "describe",
    "fax_follow_up",
    "is_confirmation",
    "offer_confirmation",
    "with_confirm_options",
]
