"""The prior-authorization step: an order -> criteria checked -> PAS Bundle + 278 + letter, to sign.

``draft(context, event, rules, now)`` is pure (the contract's step shape, plus the
authorization's state, which the shell keeps in a table keyed ``practice/authorization
id``). For an order that needs authorization (:mod:`.detect`) it

1. checks every criterion of the rule's set against the patient context
   (:mod:`.evidence`): met / not met / insufficient information, with the records;
2. drafts the submission in the forms payers accept: a Da Vinci PAS request Bundle
   (:mod:`.pas`), an X12 278 request (:mod:`practiceflow.processors.x12.x278`; not for a drug coded only in
   RxNorm, which a 278 cannot carry: the PAS bundle is then the submission) and a letter
   of medical necessity as a PDF (:mod:`.letter`);
3. puts one work item in the **clinician** queue (kind ``prior_auth.sign_off``) with the
   criteria not met / insufficient first, each saying what would satisfy it, and the
   drafts to approve, edit or reject (only edit or reject while a criterion is not met:
   :func:`sign_off_options`). Nothing is submitted: a person signs first, and
   practiceflow has no payer connection, so a signature opens a **billing**-queue item
   "Submit the signed prior-authorization request to <payer>" (:mod:`.follow_up`).

``respond(state, response, item, now)`` applies a payer's answer (a 278 response or a faxed
decision) to the authorization: its new state, and a new revision of the clinician's item
(or a new item when that one is closed) so the ordering provider sees the decision. A faxed
decision goes through :func:`.faxed.on_fax_decision` first: only a trusted one that names the
request, once signed, is applied; any other is evidence for a person. A cancelled order
ends its authorization (``_cancel``); a check that raises becomes a triage item
(:func:`failed_check_item`, used by the shell).

Ids are derived from the practice, patient and order (never time): a replay rewrites the
same authorization, item and drafts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from practiceflow.processors.base import entity_key
from practiceflow.processors.context.snapshot import PatientContext
from practiceflow.processors.ehr.order_auth import ATTACH_NUMBER
from practiceflow.processors.workflows.commands import draft_id_for, new_command
from practiceflow.processors.workflows.prior_auth import letter, pas
from practiceflow.processors.workflows.prior_auth.codes import check, dotted
from practiceflow.processors.workflows.prior_auth.detect import Need, detect, is_cancelled
from practiceflow.processors.workflows.prior_auth.evidence import CriterionResult, assess, day
from practiceflow.processors.workflows.prior_auth.follow_up import SIGN_OFF_KIND, request_evidence, submit_subject
from practiceflow.processors.workflows.prior_auth.rules import PriorAuthRules
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import END_STATES, by_rule, evidence, item_id_for, new_item, option
from practiceflow.processors.x12.x278 import Request278, WriteError, write_278

if TYPE_CHECKING:
    from practiceflow.schemas.typed import (
        DecisionOptionDict,
        DraftDict,
        EvidenceDict,
        HandoffItemDict,
        ProducedByDict,
        WorkflowCommandDict,
    )

WORKFLOW: Final = "prior_auth"
STATES: Final = ("drafted", "approved", "partially_approved", "pended", "denied", "modified", "cancelled", "other")
_DECISION_STATE: Final = {
    "approved": "approved",
    "partially_approved": "partially_approved",
    "pended": "pended",
    "denied": "denied",
    "modified": "modified",
    "cancelled": "cancelled",
    "not_required": "approved",
}
#: an authorization a cancelled order ends (one the payer approved or denied stays as it is)
CANCELLABLE: Final = frozenset({"drafted", "pended"})
#: an authorization still waiting for a signature or for the payer
OPEN_STATES: Final = frozenset({"drafted", "pended"})
#: the payer authorized (all or some of) the service: its number belongs on the order and the claim
AUTHORIZED: Final = frozenset({"approved", "partially_approved", "modified"})
_NPI: Final = re.compile(r"\((\d{10})\)")
_SYSTEM_URI: Final = {"cpt": pas.CPT, "hcpcs": pas.HCPCS, "rxnorm": pas.RXNORM, "ndc": "http://hl7.org/fhir/sid/ndc"}


@dataclass(frozen=True)
class PracticeProfile:
    """The practice's identity on drafts (settings); placeholders are marked VERIFY for the signer."""

    name: str = "VERIFY PRACTICE NAME"
    sender_id: str = "PRACTICEFLOW"
    receiver_id: str = "UMO"
    place_of_service: str = "11"


@dataclass(frozen=True)
class PriorAuthContext:
    patient: PatientContext | None
    state: Mapping[str, Any] | None = None  # the authorization's current state (a replay / an updated order)
    profile: PracticeProfile = field(default_factory=PracticeProfile)
    item: HandoffItemDict | None = None  # the authorization's item as it stands (work-items table), else state's
    submit_item: HandoffItemDict | None = None  # the billing office's submit item (:func:`submit_item_id`), if known


@dataclass(frozen=True)
class PriorAuthDecision:
    result: StepResult
    state: dict[str, Any] | None  # the authorization's next state (None: nothing to authorize)
    results: tuple[CriterionResult, ...] = ()


def authorization_id(practice_id: str, patient_id: str, order_id: str) -> str:
    """``pa<hex>``: alphanumeric, so it travels unchanged in a 278's TRN02 and comes back in the response."""
    return "pa" + hashlib.sha256("\x1f".join((practice_id, patient_id, order_id)).encode()).hexdigest()[:30]


def _requester(order: Mapping[str, Any], record_type: str) -> tuple[str, str | None, str, str]:
    """(display name, NPI, last, first) of the ordering clinician."""
    raw = str((order.get("prescriber") if record_type == "MedicationOrder" else order.get("ordering_provider")) or "")
    m = _NPI.search(raw)
    npi = m.group(1) if m else None
    name = _NPI.sub("", raw).strip() or "VERIFY ORDERING CLINICIAN"
    last, _, first = name.partition(",")
    return name, npi, last.strip() or "VERIFY", first.strip().split(" ")[0] if first.strip() else ""


def _diagnosis_codes(results: tuple[CriterionResult, ...], order: Mapping[str, Any]) -> list[str]:
    """Valid, billable ICD-10-CM codes: those the diagnosis criteria found first, then the order's."""
    codes: list[str] = []
    for r in results:
        if r.criterion.kind == "diagnosis":
            codes += [str(e["value"]) for e in r.evidence if e.get("assessment") == "supports" and e.get("value")]
    for dx in order.get("diagnoses") or ():
        if dx.get("code"):
            codes.append(str(dx["code"]))
    out: list[str] = []
    for c in codes:
        chk = check(c)
        d = dotted(c)
        if chk.valid and chk.billable and d not in out:
            out.append(d)
    return out[:12]


def _criterion_evidence(r: CriterionResult) -> list[EvidenceDict]:
    head = evidence(
        f"criterion {r.criterion.id}: {r.label}",
        assessment=r.status,
        ref=f"{r.criterion.id}@{r.criterion.version}",
        excerpt=(r.summary if r.status == "met" else f"{r.summary}. Would satisfy: {r.criterion.satisfy}")[:500],
    )
    return [head, *r.evidence]


def _draft(
    pid: str,
    aid: str,
    item_id: str,
    kind: str,
    ctype: str,
    body: str,
    produced: ProducedByDict,
    now: int,
    event: Mapping[str, Any],
) -> DraftDict:
    return {
        "practice_id": pid,
        "draft_id": draft_id_for(WORKFLOW, kind, pid, aid),
        "item_id": item_id,
        "workflow": WORKFLOW,
        "kind": kind,
        "content_type": ctype,
        "body": body,
        "document_uri": None,
        "patient_id": event.get("patient_id"),
        "status": "draft",
        "produced_by": produced,
        "created_at": now,
        "source": dict(event.get("source") or {}),  # type: ignore[typeddict-item]
    }


def draft(
    ctx: PriorAuthContext, record_type: str, order: Mapping[str, Any], rules: PriorAuthRules, now: int
) -> PriorAuthDecision:
    """See the module docstring. ``now`` is the event time in epoch ms (never the wall clock)."""
    pid = order["practice_id"]
    patient_id = str(order.get("patient_id") or "")
    if ctx.state is not None and ctx.state.get("status") in CANCELLABLE and is_cancelled(order):
        return _cancel(ctx, record_type, order, now)
    if ctx.state is not None and ctx.state.get("status") not in (None, "drafted"):
        return PriorAuthDecision(StepResult(), None)  # the payer already answered: a re-sent order changes nothing
    need: Need | None = detect(
        ctx.patient, record_type, order, rules, default_place_of_service=ctx.profile.place_of_service
    )
    if need is None:
        return PriorAuthDecision(StepResult(), None)
    rule = need.rule
    cset = rules.criteria_for(rule)
    on = day(order.get("ordered_at") or order.get("written_at")) or datetime.fromtimestamp(now / 1000, tz=UTC).date()
    patient_ctx = ctx.patient or PatientContext(practice_id=pid, patient_id=patient_id)
    results = assess(patient_ctx, order, cset.criteria, on)
    aid = authorization_id(pid, patient_id, str(order["order_id"]))
    subject = ("authorization", pid, aid)
    item_id = item_id_for(WORKFLOW, *subject)
    produced = by_rule(rule.id, rule.version, rule.source)
    created = datetime.fromtimestamp(now / 1000, tz=UTC)
    cov = need.coverage or {}
    patient = dict(patient_ctx.patient or {"patient_id": patient_id})
    req_name, npi, req_last, req_first = _requester(order, record_type)
    dx = _diagnosis_codes(results, order)
    service = f"{need.display or need.code} ({need.code})"
    payer_name = str(cov.get("payer_name") or cov.get("payer_id") or "VERIFY PAYER")
    notes: list[str] = []
    drafts: list[DraftDict] = []
    system_uri = _SYSTEM_URI.get(need.system, "urn:practiceflow:local-code")
    try:
        bundle = pas.pas_bundle(
            authorization_id=aid,
            created=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
            patient=patient,
            coverage=need.coverage,
            order=order,
            order_type=record_type,
            procedure=(system_uri, need.code, need.display),
            diagnoses=dx,
            requester=(req_name, npi),
            results=results,
            place_of_service=need.place_of_service,
        )
        drafts.append(
            _draft(pid, aid, item_id, "fhir.Bundle.pas", "application/fhir+json", bundle, produced, now, order)
        )
    except pas.PasError as exc:
        notes.append(f"no PAS bundle: {exc}")
    if need.system in ("cpt", "hcpcs", "ndc"):
        family = str(patient.get("family_name") or "VERIFY")
        given = list(patient.get("given_names") or [""])
        try:
            x12 = write_278(
                Request278(
                    trace=aid,
                    payer_name=payer_name,
                    payer_id=str(cov.get("payer_id") or "VERIFY"),
                    requester_last=req_last,
                    requester_first=req_first,
                    requester_npi=npi or "VERIFY",
                    member_last=family,
                    member_first=str(given[0] or ""),
                    member_id=str(cov.get("member_id") or "VERIFY"),
                    birth_date=str(patient["birth_date"])[:10] if patient.get("birth_date") else None,
                    sex=str(patient.get("sex") or "U")[:1].upper() or "U",
                    service_type=rule.service_type,
                    place_of_service=need.place_of_service,
                    diagnoses=dx,
                    procedure=need.code,
                    procedure_qualifier="N4" if need.system == "ndc" else "HC",
                    service_date=on.isoformat(),
                ),
                interchange_control=int(aid[2:10], 16) % 999_999_999 + 1,
                created=created.date().isoformat(),
                time_hhmm=created.strftime("%H%M"),
            )
            drafts.append(_draft(pid, aid, item_id, "x12.278", "application/edi-x12", x12, produced, now, order))
        except WriteError as exc:
            notes.append(f"no 278: {exc}")
    else:
        notes.append(f"no 278: a {need.system} code cannot be carried in SV1; the PAS bundle is the submission")
    patient_name = " ".join(p for p in (*(patient.get("given_names") or []), patient.get("family_name") or "") if p)
    text = letter.narrative(
        patient_name=patient_name or "VERIFY PATIENT NAME",
        birth_date=patient.get("birth_date"),
        member_id=cov.get("member_id"),
        payer_name=payer_name,
        service=service,
        diagnoses=dx,
        results=results,
        clinician=req_name,
        practice_name=ctx.profile.name,
        date=created.date().isoformat(),
    )
    pdf = letter.render_pdf(text, title=f"Letter of medical necessity: {service}", now_ms=now)
    drafts.append(
        _draft(
            pid, aid, item_id, "letter.medical_necessity", "application/pdf", letter.pdf_body(pdf), produced, now, order
        )
    )
    counts = {s: sum(1 for r in results if r.status == s) for s in ("not_met", "insufficient", "met")}
    all_met = all(r.status == "met" for r in results)
    ev: list[EvidenceDict] = []
    for r in results:
        ev += _criterion_evidence(r)
    ev.append(request_evidence(aid, payer_name))  # read by follow_up.py when the clinician signs
    what = (
        f"{service} ordered {on.isoformat()} needs prior authorization from {payer_name} "
        f"(rule {rule.id}@{rule.version}, criteria {cset.id}@{cset.version}): "
        f"{counts['not_met']} not met, {counts['insufficient']} insufficient information, {counts['met']} met."
        + (f" Note: {'; '.join(notes)}." if notes else "")
    )
    draft_ids = [d["draft_id"] for d in drafts]
    item = new_item(
        practice_id=pid,
        workflow=WORKFLOW,
        subject=subject,
        kind=f"{WORKFLOW}.sign_off",
        queue="clinician",
        title=f"Prior authorization to sign: {service} ({payer_name})",
        what_happened=what,
        produced_by=produced,
        source=dict(order.get("source") or {}),  # type: ignore[arg-type]  # a SourceRef record
        now=now,
        priority="high"
        if str(order.get("priority") or "").upper() in ("S", "STAT", "A", "ASAP", "URGENT")
        else "routine",
        patient_id=patient_id or None,
        subject_type=record_type,
        subject_id=str(order["order_id"]),
        decision_needed=(
            "Review the criteria (not met / insufficient first), then approve, edit or reject the drafts."
            if all_met
            else "Some criteria are not met or lack information: edit the letter (say why the service is "
            "necessary, or add the records) before signing, or reject."
        ),
        proposed_action=(
            "Sign the drafted PAS request, 278 and letter of medical necessity. practiceflow does not send them: "
            "your signature opens an item for the billing office to submit them to the payer."
        ),
        actions_taken=[f"checked {len(results)} criteria of {cset.id}", f"drafted {len(drafts)} document(s)"],
        evidence=ev,
        options=sign_off_options(results, draft_ids),
        draft_ids=draft_ids,
    )
    state = {
        "practice_id": pid,
        "authorization_id": aid,
        "patient_id": patient_id or None,
        "order_id": str(order["order_id"]),
        "order_type": record_type,
        # where the order came from: only an order read from the EHR's FHIR API is a resource there
        # that the authorization number can be attached to (an HL7 ORM's is not)
        "order_feed": str((order.get("source") or {}).get("feed") or "") or None,
        "coverage_id": cov.get("coverage_id"),
        "code": need.code,
        "service": service,
        "payer_id": cov.get("payer_id"),
        "payer_name": cov.get("payer_name"),
        "member_id": cov.get("member_id"),
        "rule": f"{rule.id}@{rule.version}",
        "criteria_set": f"{cset.id}@{cset.version}",
        "criteria": {r.criterion.id: r.status for r in results},
        "status": "drafted",
        "authorization_number": None,
        "item_id": item["item_id"],
        "item": dict(item),
        "draft_ids": draft_ids,
        "responses": [],
        "updated_at": now,
    }
    audit = AuditReason(
        "prior_auth_drafted",
        record_type,
        str(order["order_id"]),
        f"{rule.id}@{rule.version}: needs authorization; {cset.id}@{cset.version}",
        details={**{k: str(v) for k, v in counts.items()}, "drafts": str(len(drafts))},
    )
    return PriorAuthDecision(StepResult(work_items=(item,), drafts=tuple(drafts), audit=(audit,)), state, results)


def submit_item_id(state: Mapping[str, Any], item: HandoffItemDict | None) -> str | None:
    """The id of the billing office's "submit" item for this authorization, None when the
    sign-off item (``item``, else the state's copy) was not signed: the follow-up opens one
    per signing decision (follow_up.py), so its id is derived from the decision id."""
    base = item or state.get("item")
    if base is None or base.get("kind") != SIGN_OFF_KIND or base.get("state") != "done" or not base.get("decision_id"):
        return None
    return item_id_for(
        WORKFLOW, *submit_subject(str(state["practice_id"]), str(state["authorization_id"]), str(base["decision_id"]))
    )


def submitted(state: Mapping[str, Any], item: HandoffItemDict | None, submit_item: HandoffItemDict | None) -> bool:
    """Whether the request can be with the payer: the payer answered it (pended, ...), or it was
    signed and the billing office marked its submit item done.

    WHY: "signed" is not "submitted" (review s19 S2): while the submit item is open, or after
    billing answered "could not submit", nothing went to the payer, so a cancelled order needs
    no withdrawal and a faxed "decision" cannot be about it. A signed request whose submit item
    this worker cannot see (not in the work-items table) counts as submitted: that cannot be
    ruled out, and a withdraw item that says "or it was never submitted" costs a click."""
    if state.get("status") not in (None, "drafted"):
        return True
    sid = submit_item_id(state, item)
    if sid is None:
        return False  # not signed: open, rejected, or superseded
    if submit_item is None or submit_item.get("item_id") != sid:
        return True
    return submit_item.get("state") == "done"


def _cancel(ctx: PriorAuthContext, record_type: str, order: Mapping[str, Any], now: int) -> PriorAuthDecision:
    """A cancelled / discontinued order (ORC-1 CA/DC, status revoked) ends its authorization.

    WHY: the clinician's sign-off item would otherwise keep asking to sign drafts for an order
    that no longer exists. An item still open gets its last revision, ``superseded`` with the
    outcome "order cancelled", and so does the billing office's submit item while it is open
    (review s19 S2: "submit" next to "withdraw", and worked first, a request for an order
    that no longer exists). Only when the request can be with the payer (:func:`submitted`:
    pended, or its submit item done) does the billing office get an item to withdraw it. The
    authorization's status becomes ``cancelled``, so a re-sent order changes nothing."""
    state = dict(ctx.state or {})
    pid = str(state["practice_id"])
    aid = str(state["authorization_id"])
    base: HandoffItemDict | None = ctx.item or state.get("item")
    why = "The order was cancelled or discontinued, so no authorization is needed any more."
    items: list[HandoffItemDict] = []
    for open_item in (base, ctx.submit_item):
        if open_item is None or open_item.get("state", "open") in END_STATES:
            continue
        if open_item is ctx.submit_item and open_item.get("item_id") != submit_item_id(state, base):
            continue  # another decision's item (never ours to close)
        closed: HandoffItemDict = {
            **open_item,
            "state": "superseded",
            "outcome": "order cancelled",
            "what_happened": why + " " + str(open_item.get("what_happened") or ""),
            "revision": int(open_item.get("revision", 1)) + 1,
            "updated_at": now,
        }
        items.append(closed)
    if submitted(state, base, ctx.submit_item):
        payer = state.get("payer_name") or "the payer"
        with_payer = (
            f"The payer has the request ({state.get('status')}): withdraw it with {payer}"
            if state.get("status") not in (None, "drafted")
            else f"The billing office marked the request submitted: withdraw it with {payer}"
            if ctx.submit_item is not None
            else f"The request was signed; if it was submitted, withdraw it with {payer}"
        )
        items.append(
            new_item(
                practice_id=pid,
                workflow=WORKFLOW,
                subject=("cancelled", pid, aid),
                kind=f"{WORKFLOW}.cancelled",
                queue="billing",
                title=f"Order cancelled: withdraw the prior-authorization request ({state.get('service')})",
                what_happened=f"{why} {with_payer} (authorization {aid}).",
                produced_by=by_rule("prior_auth.cancel", "2", "order control CA/DC or status revoked"),
                source=dict(order.get("source") or {}),  # type: ignore[arg-type]
                now=now,
                patient_id=state.get("patient_id"),
                subject_type=record_type,
                subject_id=str(state.get("order_id")),
                evidence=[request_evidence(aid, str(state.get("payer_name") or "the payer"))],
                options=[option("acknowledge", "Withdrawn, or it was never submitted")],
            )
        )
    new_state = {
        **state,
        "status": "cancelled",
        "item": dict(items[0]) if items and items[0]["item_id"] == state.get("item_id") else state.get("item"),
        "updated_at": now,
    }
    audit = AuditReason(
        "prior_auth_cancelled", "Authorization", aid, "the order was cancelled or discontinued", details={}
    )
    return PriorAuthDecision(StepResult(work_items=tuple(items), audit=(audit,)), new_state)


def failed_check_item(
    practice_id: str, patient_id: str | None, record_type: str, order: Mapping[str, Any], error: str, now: int
) -> HandoffItemDict:
    """A triage item for an order the prior-authorization check failed on (ids only, no PHI).

    WHY: "nothing is lost" means a person acts on every input; an audit event alone is read
    by nobody as a queue, and the order may need an authorization before the service."""
    oid = str(order.get("order_id") or "")
    return new_item(
        practice_id=practice_id,
        workflow=WORKFLOW,
        subject=("failed", practice_id, str(patient_id or ""), oid),
        kind=f"{WORKFLOW}.check_failed",
        queue="triage",
        title="Prior-authorization check failed on an order: check it by hand",
        what_happened=f"The prior-authorization check raised {error} on {record_type} {oid}; the order was not "
        "checked and nothing was drafted. Check whether the payer needs an authorization for it.",
        produced_by=by_rule("prior_auth.check_failed", "1", "streams/workflows/prior_auth.py"),
        source=dict(order.get("source") or {}),  # type: ignore[arg-type]
        now=now,
        patient_id=patient_id or None,
        subject_type=record_type,
        subject_id=oid,
        options=[option("acknowledge", "Checked by hand"), option("escalate", "Hand to the billing office")],
    )


def sign_off_options(results: Sequence[CriterionResult], draft_ids: Sequence[str]) -> list[DecisionOptionDict]:
    """The sign-off item's options: ``approve`` only when every criterion is met.

    WHY: approving signs the drafts as they stand and the billing office submits them; with a
    criterion not met or lacking information the drafted letter cannot argue necessity (the
    software never does, :mod:`.letter`), so the clinician must write that part (``edit``) or
    not ask (``reject``). One click must never send a payer a letter nobody completed."""
    opts: list[DecisionOptionDict] = []
    if all(r.status == "met" for r in results):
        opts.append(option("approve", "Sign the drafts as they stand (the billing office submits them)", draft_ids[0]))
    opts += [
        option(
            "edit",
            "Change the letter or the drafts, then sign (the billing office submits them)",
            target=draft_ids[-1],
            editable=["body"],
        ),
        option("reject", "Do not request authorization"),
    ]
    return opts


def step(ctx: PriorAuthContext, event: Mapping[str, Any], rules: PriorAuthRules, now: int) -> StepResult:
    """The contract's step signature for an ``Order`` event (a medication order: :func:`draft`)."""
    return draft(ctx, "Order", event, rules, now).result


# ---------------------------------------------------------------------------------- responses
_RESPONSE_TITLES: Final = {
    "approved": "approved",
    "partially_approved": "partially approved",
    "pended": "pended (the payer needs more)",
    "denied": "denied",
    "modified": "approved with modifications",
    "cancelled": "cancelled",
    "other": "answered",
}


def open_submit_item(
    state: Mapping[str, Any], base: HandoffItemDict | None, submit_item: HandoffItemDict | None
) -> HandoffItemDict | None:
    """``submit_item`` when it is this authorization's submit item (:func:`submit_item_id` of
    the signed ``base``) and still open, else None (another decision's item is never ours)."""
    if submit_item is None or submit_item.get("state", "open") in END_STATES:
        return None
    return submit_item if submit_item.get("item_id") == submit_item_id(state, base) else None


def respond(
    state: Mapping[str, Any],
    response: Mapping[str, Any],
    item: HandoffItemDict | None,
    now: int,
    *,
    submit_item: HandoffItemDict | None = None,
) -> tuple[StepResult, dict[str, Any]]:
    """A payer's answer applied to the authorization: its next state and the clinician's notice.

    ``response`` is an ``AuthorizationResponse`` (X12 278), a PAS ClaimResponse
    (``pas_response.as_response``), a confirmed faxed decision (``confirm.confirmed_response``)
    or the fields a trusted fax gave (``decision``, ``authorization_number``, ``response_id``,
    ``source``). ``item`` is the latest revision of the authorization's work item (the
    work-items table), else the copy in ``state``. An open item gets its next revision (kind
    ``prior_auth.<state>``, the decision first in its evidence); a closed one (already signed)
    is left closed and a new item tells the ordering clinician. ``submit_item`` is the billing
    office's submit item (:func:`submit_item_id`) as the work-items table has it: still open,
    it is closed ``done`` ("the payer answered"). WHY here, for every kind of answer: the payer
    answering proves the request went out, and an open "submit" beside the decision would have
    billing submit it again (review s20 S2). A response seen before changes nothing."""
    rid = str(response.get("response_id") or "")
    if rid and rid in (state.get("responses") or ()):
        return StepResult(), dict(state)
    decision = str(response.get("decision") or "other")
    new_status = _DECISION_STATE.get(decision, "other")
    number = response.get("authorization_number") or state.get("authorization_number")
    pid = str(state["practice_id"])
    aid = str(state["authorization_id"])
    src = dict(response.get("source") or {})
    head = evidence(
        f"payer decision: {_RESPONSE_TITLES[new_status]}",
        record_type=str(response.get("record_type") or "AuthorizationResponse"),
        record_key=entity_key(pid, state.get("patient_id"), rid or aid),
        value=decision,
        assessment=new_status,
        ref=str(number) if number else None,
        excerpt=(
            f"{response.get('payer_name') or state.get('payer_name') or 'payer'}: {decision}"
            + (f", authorization number {number}" if number else "")
            + (f", reason {response.get('reason_code')}" if response.get("reason_code") else "")
            + (f" ({'; '.join(response.get('messages') or [])})" if response.get("messages") else "")
        )[:500],
    )
    base: HandoffItemDict | None = item or state.get("item")
    title = f"Prior authorization {_RESPONSE_TITLES[new_status]}: {state.get('service')}" + (
        f" - #{number}" if number else ""
    )
    what = f"The payer answered the authorization request: {decision}" + (f", number {number}." if number else ".")
    opts = [option("acknowledge", "Seen; the order can proceed" if new_status == "approved" else "Seen")]
    if new_status in ("denied", "pended", "partially_approved", "modified"):
        opts.append(option("escalate", "Hand to the billing office (appeal / more information)"))
    items: list[HandoffItemDict] = []
    if base is not None and base.get("state", "open") not in END_STATES:
        revised: HandoffItemDict = {
            **base,
            "kind": f"{WORKFLOW}.{new_status}",
            "title": title,
            "what_happened": what + " " + str(base.get("what_happened") or ""),
            "evidence": [head, *(base.get("evidence") or [])],
            "options": opts,
            "decision_needed": "Acknowledge the payer's decision.",
            "proposed_action": None,
            "revision": int(base.get("revision", 1)) + 1,
            "updated_at": now,
            "priority": "high" if new_status in ("denied", "pended") else base.get("priority", "routine"),
        }
        items.append(revised)
    else:
        items.append(
            new_item(
                practice_id=pid,
                workflow=WORKFLOW,
                subject=("response", pid, aid, rid or decision),
                kind=f"{WORKFLOW}.{new_status}",
                queue="clinician",
                title=title,
                what_happened=what,
                produced_by=by_rule("prior_auth.response", "1", "X12 278 HCR01 action codes / faxed payer decision"),
                source=src,  # type: ignore[arg-type]
                now=now,
                priority="high" if new_status in ("denied", "pended") else "routine",
                patient_id=state.get("patient_id"),
                subject_type=str(state.get("order_type") or "Order"),
                subject_id=str(state.get("order_id")),
                evidence=[head],
                options=opts,
            )
        )
    submit = open_submit_item(state, base, submit_item)
    if submit is not None:
        items.append(
            {
                **submit,
                "state": "done",
                "outcome": "the payer answered",
                "what_happened": f"The payer answered ({decision}), so the request was submitted. "
                + str(submit.get("what_happened") or ""),
                "revision": int(submit.get("revision", 1)) + 1,
                "updated_at": now,
            }
        )
    approved = approved_number(response, new_status)
    commands: tuple[WorkflowCommandDict, ...] = ()
    if approved and approved != state.get("order_number_sent"):
        commands = (order_number_command(state, approved, new_status, now, src),)
    new_state = {
        **state,
        "status": new_status,
        "authorization_number": number,
        "order_number_sent": approved if commands else state.get("order_number_sent"),
        # the number the payer approved with (review s21 S1): what the order and a corrected claim quote
        "approved_number": approved or (state.get("approved_number") if new_status in AUTHORIZED else None),
        "item": dict(items[0]) if items[0]["item_id"] == state.get("item_id") else state.get("item"),
        "responses": [*(state.get("responses") or []), rid][-20:] if rid else list(state.get("responses") or []),
        "updated_at": now,
    }
    audit = AuditReason(
        "prior_auth_response",
        "Authorization",
        aid,
        f"payer decision {decision}" + (f" ({response.get('action_code')})" if response.get("action_code") else ""),
        details={"status": new_status, "authorization_number": str(number or "")},
    )
    return StepResult(work_items=tuple(items), commands=commands, audit=(audit,)), new_state


def approved_number(response: Mapping[str, Any], new_status: str) -> str | None:
    """The number an approving answer itself carries, or None (review s21 S1).

    WHY so narrow: this number goes onto the EHR's order (CRD ``satisfied-pa-id``) and into a
    corrected claim (837P REF*G1) with no person reading it first. So never a number carried over
    from an earlier, non-approving answer (a pended or denied 278's reference), never on
    "authorization not required" (CRD would say ``no-auth``, not satisfied), and never one read from
    a fax by OCR without a person confirming it (``FaxClassification``: the billing office's
    confirmation, ``StaffDecision``, carries the number a person checked)."""
    if new_status not in AUTHORIZED or response.get("decision") == "not_required":
        return None
    if response.get("record_type") == "FaxClassification":
        return None
    number = str(response.get("authorization_number") or "").strip()
    return number or None


def order_number_command(
    state: Mapping[str, Any], number: str, status: str, now: int, source: Mapping[str, Any] | None = None
) -> WorkflowCommandDict:
    """The ``ehr_write`` command that attaches the payer's authorization number to the order in
    the EHR (a Da Vinci CRD ``coverage-information`` extension on its ServiceRequest, written by
    ``ehr sync``: :func:`practiceflow.streams.commands.ehr_write.attach_authorization`).

    WHY a command, and no sign-off: the step stays pure (the writer is the one place that writes
    to an EHR, pilot-gated and audited there); the write is administrative, not clinical (the
    clinician signed the request, the payer approved it). The id derives from the authorization
    and the number, so a replay or the same answer twice re-emits the same id (written once), and
    :func:`respond` emits it only when the number is not the one already sent
    (``order_number_sent``); a payer that changes the number gets a new command."""
    pid, aid = str(state["practice_id"]), str(state["authorization_id"])
    order_id = str(state.get("order_id") or "")
    order_type = str(state.get("order_type") or "Order")
    payload = {
        "action": ATTACH_NUMBER,
        "authorization_id": aid,
        "authorization_number": number,
        "status": status,
        "order_id": order_id,
        "order_type": order_type,
        "order_feed": state.get("order_feed"),
        "coverage_id": state.get("coverage_id"),
        "payer_name": state.get("payer_name"),
        "decided_on": datetime.fromtimestamp(now / 1000, tz=UTC).date().isoformat(),
    }
    return new_command(
        practice_id=pid,
        kind="ehr_write",
        workflow=WORKFLOW,
        subject=("authorization_number", aid, number),
        payload_type=ATTACH_NUMBER,
        payload=json.dumps(payload, sort_keys=True, separators=(",", ":")),
        now=now,
        item_id=state.get("item_id"),
        patient_id=state.get("patient_id"),
        params={
            "action": ATTACH_NUMBER,
            "authorization_id": aid,
            "authorization_number": number,
            "order_id": order_id,
            "order_type": order_type,
        },
        source=dict(source) if source else None,  # type: ignore[arg-type]
    )
