"""Faxed payer decisions for an authorization: which request a fax names, and whether it may move it.

Why a module of its own: a fax is the one answer that can be read wrong (OCR, a classifier,
maybe a language model) and can name no request, or several. Everything here decides whether
a faxed decision is *trusted* and *names* exactly one request (a reference outranks a
procedure code), and otherwise makes it evidence for a person. An applied fax then goes
through the same :func:`.step.respond` as a 278 or a PAS answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from practiceflow.processors.base import entity_key
from practiceflow.processors.workflows.prior_auth.step import (
    OPEN_STATES,
    open_submit_item,
    respond,
    submit_item_id,
    submitted,
)
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import END_STATES, evidence

if TYPE_CHECKING:
    from practiceflow.schemas.typed import HandoffItemDict


#: a faxed decision's ``kind`` (processors/workflows/fax) -> the payer decision it states
FAX_DECISIONS: Final = {
    "pa.approved": "approved",
    "pa.denied": "denied",
    "pa.pending": "pended",
    "pa.more_info": "pended",
}
_CODE_FIELDS: Final = frozenset({"code", "procedure", "procedure_code", "service_code", "cpt"})


def trusted_fax_decision(classification: Mapping[str, Any]) -> bool:
    """Whether a faxed payer decision was read well enough to update an authorization.

    Only a classification the embedded model made with confidence, addressed to us, and read
    by the rules: an abstained page, a misdirected fax, an unreadable page, or any revision by
    the language-model layer (extractor ``rules+llm`` / ``+fallback``: the label or the
    decision may be the model's, uncalibrated) goes to a person through the fax's own work
    item instead. A wrong "approved" would rewrite the clinician's sign-off item."""
    if classification.get("abstained") or classification.get("misdirected"):
        return False
    if classification.get("needs_human_read"):
        return False
    extractor = str(classification.get("extractor") or "rules")
    return "llm" not in extractor and "+" not in extractor


def _norm_ref(value: Any) -> str:
    return re.sub(r"[^0-9a-z]", "", str(value or "").lower())


def same_reference(a: Any, b: Any) -> bool:
    """Whether two references are the same once case, spaces and punctuation are ignored (faxes vary them)."""
    return bool(_norm_ref(a)) and _norm_ref(a) == _norm_ref(b)


def by_reference(state: Mapping[str, Any], classification: Mapping[str, Any]) -> bool:
    """Whether the fax quotes *this* authorization's reference: our request id (the 278's TRN,
    the id the submit item tells billing to quote) or the payer's number already on file.

    WHY: a reference names one request; a procedure code (:func:`by_code`) can be on several
    of the patient's requests (a renewal), so a reference outranks a code (review s20 S1)."""
    refs = {_norm_ref(state.get(k)) for k in ("authorization_id", "authorization_number")} - {""}
    return any(
        e.get("field") == "reference" and _norm_ref(e.get("value")) in refs
        for e in classification.get("extracted") or ()
        if _norm_ref(e.get("value"))
    )


def by_code(state: Mapping[str, Any], classification: Mapping[str, Any]) -> bool:
    """Whether a procedure code the fax carries is this request's (weaker than :func:`by_reference`)."""
    code = _norm_ref(state.get("code"))
    return bool(code) and any(
        e.get("field") in _CODE_FIELDS and _norm_ref(e.get("value")) == code
        for e in classification.get("extracted") or ()
    )


def fax_matches(state: Mapping[str, Any], classification: Mapping[str, Any]) -> bool:
    """Whether the fax names *this* authorization, by reference (:func:`by_reference`) or by
    procedure code (:func:`by_code`).

    WHY: a patient can have another request in flight (one the office phoned in, an older
    one); "the patient's only open authorization" is a guess, and a guessed approval would
    send the patient to an MRI nobody authorized."""
    return by_reference(state, classification) or by_code(state, classification)


def fax_target(
    states: Sequence[Mapping[str, Any]], classification: Mapping[str, Any]
) -> tuple[Mapping[str, Any] | None, bool]:
    """Which of the patient's authorizations a faxed decision is about: ``(state, ambiguous)``.

    A reference outranks a code (review s20 S1): the one request the fax quotes by reference
    (:func:`by_reference`) is its target, named alone, whatever other request shares its
    procedure code (payers print the CPT code on a renewal's approval). Only when no request
    is named by reference does the code count: one request named by code is the target;
    more than one (the same CPT code on an earlier, approved request and a new pended one:
    payers re-fax old approvals) is ``ambiguous`` (review s19 S3), and the only open one
    *among those named* carries it as evidence only, None when none of them is open (review
    s20 N1: never a request the fax does not name). A fax naming no request goes, as
    evidence only, to the patient's only open one (:func:`on_fax_decision` applies nothing it
    does not name). ``None`` when no single request can carry it: the fax's own item has it."""
    live = [st for st in states if st]
    named = [st for st in live if by_reference(st, classification)] or [
        st for st in live if by_code(st, classification)
    ]
    if len(named) == 1:
        return named[0], False
    pool = named or live
    open_ = [st for st in pool if st.get("status") in OPEN_STATES]
    return (open_[0] if len(open_) == 1 else None), len(named) > 1


def fax_response(classification: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A faxed decision as the response :func:`respond` applies.

    The fax's reference is the payer's authorization number only when it is not our own
    request id (``state``'s ``authorization_id``, which billing is told to quote): our id is
    no payer number (review s20 N3: the clinician's item read "approved - #pa99b44c...")."""
    ref = next((e["value"] for e in classification.get("extracted") or () if e.get("field") == "reference"), None)
    if state is not None and same_reference(ref, state.get("authorization_id")):
        ref = None
    return {
        "response_id": f"fax:{classification['classification_id']}",
        "decision": FAX_DECISIONS.get(str(classification.get("kind")), "other"),
        "authorization_number": ref,
        "record_type": "FaxClassification",
        "source": classification.get("source"),
    }


def on_fax_decision(
    state: Mapping[str, Any],
    classification: Mapping[str, Any],
    item: HandoffItemDict | None,
    now: int,
    *,
    ambiguous: bool = False,
    submit_item: HandoffItemDict | None = None,
) -> tuple[StepResult, dict[str, Any]]:
    """A faxed payer decision for this authorization: applied, or only shown to a person.

    It moves the authorization (:func:`respond`) only when it is trusted
    (:func:`trusted_fax_decision`), names this authorization and no other of the patient's
    (:func:`fax_matches`; ``ambiguous`` from :func:`fax_target`) and the request can be with
    the payer: :func:`submitted` (pended, or signed and its submit item ``submit_item``
    done), or signed and the fax quotes our reference (:func:`by_reference`). WHY the last:
    the submit item tells billing to quote our authorization id, so a payer's answer quoting
    it proves the request went out, and billing often marks the submit item done after the
    payer answered (review s20 S2: the fax was dropped for good). The submit item, still
    open, is then closed ``done`` ("the payer answered").

    Otherwise the clinician's open item gets the fax as its first evidence, options kept,
    else the billing office's open submit item does ("the payer may already have answered"),
    and the authorization's status is unchanged: a person confirms the decision on the
    fax's own billing item (processors/workflows/fax routes it there)."""
    response = fax_response(classification, state)
    rid = response["response_id"]
    if rid in (state.get("responses") or ()):
        return StepResult(), dict(state)
    base: HandoffItemDict | None = item or state.get("item")
    is_open = base is not None and base.get("state", "open") not in END_STATES
    trusted, matches = trusted_fax_decision(classification), fax_matches(state, classification)
    quoted = by_reference(state, classification) and submit_item_id(state, base) is not None
    unsent = not submitted(state, base, submit_item) and not quoted
    submit_open = open_submit_item(state, base, submit_item) is not None
    if trusted and matches and not ambiguous and not unsent:
        return respond(state, response, item, now, submit_item=submit_item)
    why = (
        "not read reliably (the classifier abstained, OCR was unsure, or the language model labelled it)"
        if not trusted
        else "it names more than one of the patient's requests (the same code or reference)"
        if ambiguous
        else "it names no reference or code of this request"
        if not matches
        else "the request was not submitted yet (not signed, or its submit item is not done)"
    )
    pid, aid = str(state["practice_id"]), str(state["authorization_id"])
    head = evidence(
        f"faxed payer decision, unconfirmed: {response['decision']}",
        record_type="FaxClassification",
        record_key=entity_key(pid, state.get("patient_id"), str(classification["classification_id"])),
        value=str(response["decision"]),
        assessment="unconfirmed",
        ref=str(response["authorization_number"]) if response["authorization_number"] else None,
        document_uri=classification.get("storage_uri"),
        page=int(classification["pages"][0]) if classification.get("pages") else None,
        excerpt=f"A fax says {response['decision']}; it did not change this authorization: {why}. "
        "Confirm it on the fax's billing item.",
    )
    items: list[HandoffItemDict] = []
    carrier = base if is_open else submit_item if submit_open else None
    if carrier is not None:
        lead = (
            f"A faxed payer decision ({response['decision']}) arrived; a person confirms it. "
            if carrier is base
            else f"The payer may already have answered: a fax says {response['decision']} (not confirmed). "
        )
        noted: HandoffItemDict = {
            **carrier,
            "evidence": [head, *(carrier.get("evidence") or [])],
            "what_happened": lead + str(carrier.get("what_happened") or ""),
            "revision": int(carrier.get("revision", 1)) + 1,
            "updated_at": now,
        }
        items.append(noted)
    new_state = {
        **state,
        "item": dict(items[0]) if items and items[0]["item_id"] == state.get("item_id") else state.get("item"),
        "responses": [*(state.get("responses") or []), rid][-20:],
        "updated_at": now,
    }
    audit = AuditReason(
        "prior_auth_fax_unconfirmed",
        "Authorization",
        aid,
        f"faxed decision {response['decision']} not applied: {why}",
        details={
            "status": str(state.get("status")),
            "trusted": str(trusted),
            "matches": str(matches),
            "ambiguous": str(ambiguous),
        },
    )
    return StepResult(work_items=tuple(items), audit=(audit,)), new_state
