"""A person's confirmation of a faxed payer decision, carried to the authorization (review s19 S4).

Most faxed decisions are evidence only (:func:`.step.on_fax_decision`: a language model
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
from typing import Any, Final

from practiceflow.processors.workflows.commands import new_command
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


def with_confirm_options(
    fax_item: HandoffItemDict | None, state: Mapping[str, Any], faxed_decision: str, now: int
) -> HandoffItemDict | None:
    """The fax's billing item, next revision, offering to confirm the decision for this authorization.

    None when there is nothing to offer: no item, not a prior-auth response in the billing
    queue (a triage item is sorted first), already decided, or already offering it."""
    if fax_item is None or fax_item.get("kind") != FAX_ITEM_KIND or fax_item.get("queue") != "billing":
        return None
    if fax_item.get("state", "open") in END_STATES:
        return None
    aid = str(state["authorization_id"])
    if any(o.get("target") == aid for o in fax_item.get("options") or []):
        return None  # a replay: the item already offers it
    kept = [o for o in fax_item.get("options") or [] if o["option"] not in CONFIRMING]
    options = [
        option("approve", f"Confirm: the payer's decision is {faxed_decision} (authorization {aid})", target=aid),
        option(
            "edit",
            "Confirm another decision for this authorization: decision=approved|denied|pended "
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
        excerpt=f"authorization {aid} ({state.get('status')}); the fax says {faxed_decision}",
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


def _pointer(item: HandoffItemDict) -> tuple[str, str] | None:
    for e in item.get("evidence") or []:
        if e.get("label") == AUTHORIZATION_EVIDENCE and e.get("record_key"):
            return str(e["record_key"]), str(e.get("value") or "")
    return None


def _reference(item: HandoffItemDict) -> str | None:
    return next((str(e["value"]) for e in item.get("evidence") or [] if e.get("label") == "reference"), None)


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
    number = (edits.get("authorization_number") or "").strip() or _reference(item) or ""
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


def is_confirmation(command: WorkflowCommandDict | Mapping[str, Any]) -> bool:
    return command.get("kind") == COMMAND_KIND and bool((command.get("params") or {}).get("authorization_id"))


__all__ = ["confirmed_response", "fax_follow_up", "is_confirmation", "with_confirm_options"]
