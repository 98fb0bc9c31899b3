"""The refill workflow step: (context, RefillRequest, rules, now) -> StepResult.

One request gives exactly one work item (queue ``clinician``, kind ``refill.<class>``)
with the rule that fired and the typed evidence, and, for ``routine`` only, one Draft: a
FHIR R4 MedicationRequest renewing the matching active order (status ``draft``), validated
with fhir.resources before it is emitted. Nothing is sent anywhere: the draft waits for a
clinician's one-click sign-off (options approve / edit / reject on the item); writing it
to the EHR is a later command that only a StaffDecision can cause.

Every item goes to a clinician, including ``needs_visit`` (the clinician decides on a
bridge supply while the visit is booked): prescribing stays with a person. The item id
is derived from practice, patient and request id, so a replayed request rewrites the same
item and draft instead of adding a second one. Titles name the class and the protocol,
never the drug (titles reach the analytics store; the drug is in the narrative and evidence).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from fhir.resources.R4B.medicationrequest import MedicationRequest

from practiceflow.processors.context.snapshot import PatientContext
from practiceflow.processors.workflows.commands import draft_id_for
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.schemas.typed import DraftDict, EvidenceDict

from .rules import RefillRules
from .triage import NEEDS_REVIEW, NEEDS_VISIT, ROUTINE, Finding, Triage, order_strength, reason_text, triage

WORKFLOW: Final = "refill"
DUE_MS: Final = 48 * 3600 * 1000  # refill requests answered within 48 hours (clinic refill policies, protocols.yaml)
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
EDITABLE: Final = ("quantity", "refills", "dosage_instruction", "days_supply")


def _evidence(f: Finding) -> EvidenceDict:
    return evidence(
        f.label,
        record_type=f.record_type,
        record_key=f.record_key,
        value=f.value,
        unit=f.unit,
        reference_range=f.reference_range,
        flags=f.flags,
        observed_at=f.observed_at,
        assessment=f.assessment,
        excerpt=f.excerpt,
    )


def _channel(request: Mapping[str, Any]) -> str:
    """Where the request came from, as staff read it: a pharmacy's fax or the patient portal."""
    return "Faxed" if (request.get("source") or {}).get("feed") == "fax" else "Portal"


def _quantity(text: str | None) -> tuple[float | None, str | None]:
    if not text:
        return None, None
    parts = str(text).split(None, 1)
    try:
        return float(parts[0]), (parts[1] if len(parts) > 1 else None)
    except ValueError:
        return None, None


def renewal_resource(
    request: Mapping[str, Any], order: Mapping[str, Any], t: Triage, draft_id: str, now: int
) -> dict[str, Any]:
    """The FHIR R4 MedicationRequest (status draft) that renews ``order`` as it stands."""
    practice, patient = request["practice_id"], request["patient_id"]
    med = order.get("medication") or {}
    coding = {"display": med.get("display") or request.get("medication")}
    if med.get("code"):
        coding["code"] = med["code"]
        coding["system"] = (
            RXNORM if (med.get("system") or "").upper() in ("RXNORM", "RXN", RXNORM.upper(), "") else med["system"]
        )
    dosage_text = " ".join(
        str(p) for p in (order.get("dose"), order.get("dose_units"), order.get("route"), order.get("frequency")) if p
    )
    dosage: dict[str, Any] = {"text": order.get("instructions") or dosage_text or "as previously prescribed"}
    qty, unit = _quantity(order.get("quantity"))
    dispense: dict[str, Any] = {}
    if qty is not None:
        dispense["quantity"] = {"value": qty, **({"unit": unit} if unit else {})}
    refills = order.get("refills")
    dispense["numberOfRepeatsAllowed"] = int(refills) if isinstance(refills, int) and refills > 0 else 1
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:practiceflow:draft", "value": draft_id}],
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [coding], "text": coding["display"]},
        "subject": {"identifier": {"system": f"urn:practiceflow:{practice}:patient", "value": patient}},
        "authoredOn": datetime.fromtimestamp(now / 1000, tz=UTC).isoformat(timespec="seconds"),
        "dosageInstruction": [dosage],
        "dispenseRequest": dispense,
        "priorPrescription": {
            "identifier": {"system": f"urn:practiceflow:{practice}:medication-order", "value": str(order["order_id"])},
            "display": str(med.get("display") or ""),
        },
        "note": [
            {
                "text": f"Renewal drafted by refill triage ({t.rule_id}@{t.rule_version}); "
                "awaiting a clinician's sign-off. Not sent."
            }
        ],
    }
    if order.get("prescriber"):
        resource["requester"] = {"display": str(order["prescriber"])}
    MedicationRequest.model_validate(resource)  # refuses a malformed draft here, not in the EHR
    return resource


def refill_step(
    ctx: PatientContext, request: Mapping[str, Any], rules: RefillRules, now: int, context_current: bool = True
) -> StepResult:
    """Triage one refill request into one work item (+ a renewal draft when routine).
    ``context_current=False`` makes it needs_review (see :func:`triage`)."""
    if request.get("practice_id") != ctx.practice_id or request.get("patient_id") != ctx.patient_id:
        raise ValueError("refill request folded with another practice's or patient's context")
    t = triage(request, ctx, rules, now, context_current)
    practice, patient, rid = request["practice_id"], request["patient_id"], request["request_id"]
    subject = (practice, patient, rid)
    drafts: list[DraftDict] = []
    produced = by_rule(t.rule_id, t.rule_version, t.rule_source)
    rule = rules.by_class.get(t.drug_class) if t.drug_class else None
    protocol = rule.title if rule is not None else "no protocol"
    ev = [_evidence(f) for f in t.findings]
    if t.missing:
        ev.append(evidence("missing", assessment="missing", excerpt="; ".join(t.missing)))
    drug = str(request.get("medication") or "?")
    if t.triage_class == ROUTINE and t.order is not None:
        draft_id = draft_id_for(WORKFLOW, "fhir.MedicationRequest", *subject)
        resource = renewal_resource(request, t.order, t, draft_id, now)
        strength = order_strength(t.order)
        proposed = (
            f"Renew {(t.order.get('medication') or {}).get('display') or drug}"
            + (f" ({strength.text})" if strength else "")
            + f" as on order {t.order.get('order_id')}: the draft MedicationRequest is ready to sign."
        )
        options = [
            option("approve", "Sign the renewal as drafted (queued for the EHR write-back)", target=draft_id),
            option("edit", "Change quantity, refills or directions, then sign", target=draft_id, editable=EDITABLE),
            option("reject", "Do not renew; tell the patient why", target=draft_id),
        ]
        decision = "Sign off the pre-approved renewal, change it, or decline."
        draft_ids = [draft_id]
    elif t.triage_class == NEEDS_VISIT:
        proposed = "Book a visit: " + reason_text(t.reasons) + ". Decide whether to bridge until then."
        options = [
            option("approve", "Bridge supply until the visit (prescribe in the EHR)"),
            option("reject", "No refill until the patient is seen"),
        ]
        decision = "The protocol requires a visit first: bridge or decline."
        draft_ids = []
    else:
        proposed = "Clinician review: " + reason_text(t.reasons) + "."
        options = [
            option("approve", "Approve the refill (prescribe in the EHR)"),
            option("reject", "Decline the refill; tell the patient why"),
            option("escalate", "Hand to another clinician"),
        ]
        decision = "Not routine under the refill protocols: review the evidence and decide."
        draft_ids = []
    priority = "routine"
    if "controlled_substance" in t.reasons or any(r.endswith("_abnormal") for r in t.reasons):
        priority = "high"
    item = new_item(
        practice_id=practice,
        workflow=WORKFLOW,
        subject=subject,
        kind=f"{WORKFLOW}.{t.triage_class}",
        queue="clinician",
        title=f"Refill request: {t.triage_class.replace('_', ' ')} ({protocol})",
        what_happened=f"{_channel(request)} refill request for {drug}"
        + (f", last filled {request['last_filled']}" if request.get("last_filled") else "")
        + f". Triage: {t.triage_class} under {t.rule_id}@{t.rule_version}.",
        produced_by=produced,
        source=dict(request["source"]),  # type: ignore[arg-type]
        now=now,
        priority=priority,
        patient_id=patient,
        subject_type="RefillRequest",
        subject_id=rid,
        decision_needed=decision,
        proposed_action=proposed,
        actions_taken=[f"Triaged against the refill protocols: {t.triage_class}."]
        + (["Drafted a renewal MedicationRequest (not sent)."] if draft_ids else []),
        evidence=ev,
        options=options,
        draft_ids=draft_ids,
        due_at=now + DUE_MS,
    )
    if draft_ids:
        drafts.append(
            {
                "practice_id": practice,
                "draft_id": draft_ids[0],
                "item_id": item["item_id"],
                "workflow": WORKFLOW,
                "kind": "fhir.MedicationRequest",
                "content_type": "application/fhir+json",
                "body": json.dumps(resource, sort_keys=True, separators=(",", ":")),
                "document_uri": None,
                "patient_id": patient,
                "status": "draft",
                "produced_by": produced,
                "created_at": now,
                "source": dict(request["source"]),  # type: ignore[typeddict-item]
            }
        )
    audit = AuditReason(
        action="refill_triaged",
        entity_type="RefillRequest",
        entity_id=rid,
        reason=f"{t.triage_class} by {t.rule_id}@{t.rule_version}",
        details={
            "class": t.triage_class,
            "rule_id": t.rule_id,
            "rule_version": t.rule_version,
            "drug_class": t.drug_class or "",
            "reasons": ",".join(t.reasons),
            "item_id": item["item_id"],
        },
    )
    return StepResult(work_items=(item,), drafts=tuple(drafts), audit=(audit,))


FAILED_POLICY: Final = ("refill.internal_error", "1", "fail closed: the triage step failed; a person decides")


def failed_step(request: Mapping[str, Any], now: int, error: str) -> StepResult:
    """The item for a request the step could not triage: needs_review, saying so (no PHI in ``error``)."""
    practice, patient, rid = request["practice_id"], request["patient_id"], request["request_id"]
    rid_, ver, src = FAILED_POLICY
    item = new_item(
        practice_id=practice,
        workflow=WORKFLOW,
        subject=(practice, patient, rid),
        kind=f"{WORKFLOW}.{NEEDS_REVIEW}",
        queue="clinician",
        title="Refill request: needs review (triage failed)",
        what_happened=f"{_channel(request)} refill request for {request.get('medication')!s}; automatic triage failed ({error}).",
        produced_by=by_rule(rid_, ver, src),
        source=dict(request["source"]),  # type: ignore[arg-type]
        now=now,
        priority="high",
        patient_id=patient,
        subject_type="RefillRequest",
        subject_id=rid,
        decision_needed="Triage this refill request by hand.",
        proposed_action="Clinician review: automatic triage failed.",
        options=[
            option("approve", "Approve the refill (prescribe in the EHR)"),
            option("reject", "Decline the refill"),
        ],
        due_at=now + DUE_MS,
    )
    audit = AuditReason(
        action="refill_triaged",
        entity_type="RefillRequest",
        entity_id=rid,
        reason=f"{NEEDS_REVIEW} by {rid_}@{ver}",
        outcome="failed",
        details={
            "class": NEEDS_REVIEW,
            "rule_id": rid_,
            "rule_version": ver,
            "error": error,
            "item_id": item["item_id"],
        },
    )
    return StepResult(work_items=(item,), audit=(audit,))


__all__ = ["WORKFLOW", "refill_step", "failed_step", "renewal_resource", "NEEDS_REVIEW", "NEEDS_VISIT", "ROUTINE"]
