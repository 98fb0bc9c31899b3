"""A Da Vinci PAS ClaimResponse (a FHIR prior-authorization answer) as the payer decision :func:`.step.respond` applies.

A PAS response arrives on the FHIR feed and is normalized like any ClaimResponse into a
``ClaimAdjudication`` (processors/fhir/mappers/billing.py): ``use`` = ``preauthorization``,
``claim_id`` = the Claim it answers (``request``; else the response's identifier, which a
payer echoes from our request), ``authorization_number`` = ``preAuthRef`` (else the
reviewAction's ``number``), the X12 review action codes (HCR01, code system 306) in the
lines' and header's ``remark_codes`` as ``HCR01:<code>``, and ``outcome``.

Our request's Claim id *is* the authorization id (:func:`.pas.pas_bundle`), so a response
finds its authorization by that id and nothing else (:func:`request_ids`); one that names
no authorization of the practice becomes a billing item with the response as evidence
(:func:`unmatched_item`): a guessed match could approve a service nobody authorized.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from practiceflow.processors.base import entity_key
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.processors.x12.x278 import ACTIONS

if TYPE_CHECKING:
    from practiceflow.schemas.typed import HandoffItemDict

WORKFLOW: Final = "prior_auth"
RULE_ID: Final = "prior_auth.pas_response"
RULE_VERSION: Final = "1"
RULE_SOURCE: Final = "Da Vinci PAS ClaimResponse: reviewAction (X12 306 / HCR01), preAuthRef, outcome"
#: the decisions that say something was authorized, in part or in full
_GRANTING: Final = frozenset({"approved", "partially_approved", "modified"})


def is_pas_response(adjudication: Mapping[str, Any]) -> bool:
    """Whether a normalized ClaimAdjudication is a prior-authorization answer, not a claim's.

    WHY ``use`` only: an 835 or an ordinary ClaimResponse is the denial workflow's; the
    PAS profile fixes ``use`` to ``preauthorization``."""
    return str(adjudication.get("use") or "").lower() == "preauthorization"


def request_ids(adjudication: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids of ours the response may name: the Claim it answers, then its identifier (a payer
    that echoes the request's trace). The shell looks each up as an authorization id, exactly."""
    out: list[str] = []
    for k in ("claim_id", "payer_claim_control_number"):
        v = str(adjudication.get(k) or "").strip()
        if v and v not in out:
            out.append(v)
    return tuple(out)


def action_codes(adjudication: Mapping[str, Any]) -> list[str]:
    """The review action codes (HCR01) of the header, then of each line, in order."""
    codes: list[str] = []
    remarks = list(adjudication.get("remark_codes") or [])
    for line in adjudication.get("lines") or ():
        remarks += list(line.get("remark_codes") or [])
    for r in remarks:
        if str(r).startswith("HCR01:"):
            codes.append(str(r)[6:])
    return codes


def decision_of(adjudication: Mapping[str, Any]) -> str:
    """The payer's decision, in :data:`practiceflow.processors.x12.x278.ACTIONS` vocabulary.

    One service (what we request): its review action. Several: all alike -> that one; some
    granted and some not -> partially approved; else pended if any line is. No review action:
    ``outcome`` queued means the payer holds it (pended); anything else is ``other`` (a person
    reads the response)."""
    decisions = [ACTIONS.get(c, "other") for c in action_codes(adjudication)]
    if not decisions:
        return "pended" if str(adjudication.get("outcome") or "") == "queued" else "other"
    if len(set(decisions)) == 1:
        return decisions[0]
    if set(decisions) & _GRANTING and set(decisions) - _GRANTING:
        return "partially_approved"
    if "pended" in decisions:
        return "pended"
    return decisions[0]


def response_id(adjudication: Mapping[str, Any]) -> str:
    """The id :func:`.step.respond` remembers the answer by: the ClaimResponse id plus a digest of
    what it says (decision, review action codes, authorization number, outcome).

    WHY not the resource id alone: a payer finishes a pended request by updating the *same*
    ClaimResponse (same id, new ``meta.versionId``: A4, later A1 with ``preAuthRef``); keyed by
    the id, the approval was "seen before" and ignored. Keyed by content, a replay of a version
    (or a new version saying the same thing) still changes nothing. Known limit: a version that
    goes back to exactly what an earlier one said (A4, A1, A4 again) is taken as that earlier
    answer; a payer does not un-approve in place, it sends a new response."""
    said = "|".join(
        [
            decision_of(adjudication),
            ",".join(action_codes(adjudication)),
            str(adjudication.get("authorization_number") or ""),
            str(adjudication.get("outcome") or ""),
        ]
    )
    return f"pas:{adjudication['adjudication_id']}:{hashlib.sha256(said.encode()).hexdigest()[:12]}"


def as_response(adjudication: Mapping[str, Any]) -> dict[str, Any]:
    """The response :func:`.step.respond` applies (the fields a 278 response gives)."""
    codes = action_codes(adjudication)
    outcome = adjudication.get("outcome")
    return {
        "response_id": response_id(adjudication),
        "decision": decision_of(adjudication),
        "action_code": ",".join(dict.fromkeys(codes)) or None,
        "authorization_number": adjudication.get("authorization_number"),
        "payer_name": adjudication.get("payer_name"),
        "messages": [f"PAS ClaimResponse outcome {outcome}"] if outcome else [],
        "record_type": "ClaimAdjudication",
        "source": adjudication.get("source"),
    }


def unmatched_item(adjudication: Mapping[str, Any], now: int) -> HandoffItemDict:
    """A billing item for a PAS response that names no authorization of the practice.

    WHY a person: the payer answered something; whether it is a request the office sent by
    other means, or another practice's, only a person can tell. Nothing is changed."""
    pid = str(adjudication["practice_id"])
    adj_id = str(adjudication["adjudication_id"])
    response = as_response(adjudication)
    number = response["authorization_number"]
    ids = request_ids(adjudication)
    head = evidence(
        f"PAS prior-authorization response: {response['decision']}",
        record_type="ClaimAdjudication",
        record_key=entity_key(pid, adjudication.get("patient_id"), adj_id),
        value=str(response["decision"]),
        assessment="unmatched",
        ref=str(number) if number else None,
        excerpt=(
            f"{adjudication.get('payer_name') or adjudication.get('payer_id') or 'A payer'} answered request "
            f"{' / '.join(ids) or '(no request id)'}: {response['decision']}"
            + (f" ({response['action_code']})" if response["action_code"] else "")
            + (f", authorization number {number}" if number else "")
            + ". No authorization of this practice has that request id."
        )[:500],
    )
    return new_item(
        practice_id=pid,
        workflow=WORKFLOW,
        subject=("pas_unmatched", pid, adj_id),
        kind=f"{WORKFLOW}.response_unmatched",
        queue="billing",
        title=f"Prior-authorization answer matches no request: {response['decision']}"
        + (f" - #{number}" if number else ""),
        what_happened="A Da Vinci PAS ClaimResponse arrived on the FHIR feed, but the request it answers is none "
        "of the authorizations practiceflow drafted for this practice, so no authorization was changed.",
        produced_by=by_rule(RULE_ID, RULE_VERSION, RULE_SOURCE),
        source=dict(adjudication.get("source") or {}),  # type: ignore[arg-type]  # a SourceRef record
        now=now,
        priority="high" if response["decision"] in ("denied", "pended") else "routine",
        patient_id=adjudication.get("patient_id"),
        subject_type="ClaimAdjudication",
        subject_id=adj_id,
        decision_needed="Find the request this answers (phoned in, sent by another system, or not ours) and "
        "record the decision there.",
        evidence=[head],
        options=[option("acknowledge", "Recorded by hand"), option("escalate", "Hand to the ordering clinician")],
    )
