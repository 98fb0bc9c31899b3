"""The drafts a denial produces: a corrected claim, an appeal letter, a patient transfer, a write-off.

Every draft waits for a person (``Draft.status = draft``); nothing here sends anything.

* **Corrected claim** — the claim as first sent, with the fix applied, written as an 837P
  with claim frequency code 7 and the payer's claim control number (CLP07) in REF*F8
  (:mod:`practiceflow.processors.x12.write837`). The field-level diff against the original
  is part of the work item, fix and replacement markers apart. The same replacement is also
  drafted as a FHIR R4 ``Claim`` (:func:`claim_resource`, status ``draft``, validated with
  fhir.resources R4B) so the EHR write-back can show it as a draft in the chart (issue 12).
* **Appeal letter** — plain text (the practice's letterhead is added when it is printed)
  naming the claim, the payer's control number, each denial reason with its CARC/RARC
  wording and the evidence attached.
* **Patient transfer** and **write-off** — JSON documents a practice-management system can
  post once approved: the claim, the amounts and the adjustments behind them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from fhir.resources.R4B.claim import Claim

from practiceflow.processors.workflows.denials.categorize import Categorized
from practiceflow.processors.workflows.denials.store import FieldChange, apply_changes
from practiceflow.processors.x12.write837 import Parties, write_837p

if TYPE_CHECKING:
    from practiceflow.schemas.typed import ClaimDict

WORKFLOW = "denials"
CLAIM_TYPE: Final = "http://terminology.hl7.org/CodeSystem/claim-type"
RELATED_CLAIM: Final = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"
# X12 CLM05-3 claim frequency type code; no FHIR element carries it, so it is a coding beside "prior"
FREQUENCY_SYSTEM: Final = "urn:x12:claim-frequency-code"
CPT: Final = "http://www.ama-assn.org/go/cpt"
NPI: Final = "http://hl7.org/fhir/sid/us-npi"
PLACE_OF_SERVICE: Final = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"


@dataclass(frozen=True)
class BillingProfile:
    """The practice's billing identity for drafted claims (settings ``billing_*``).

    Placeholders are marked ``VERIFY``: the approving person sees them in the draft."""

    name: str = "VERIFY PRACTICE NAME"
    tax_id: str = "000000000"
    npi: str | None = None  # else the 835's payee NPI
    address: tuple[str, str, str, str] = ("VERIFY ADDRESS", "CITY", "ST", "00000")
    sender_id: str = "PRACTICEFLOW"
    receiver_id: str = "CLEARINGHOUSE"
    receiver_name: str = "CLEARINGHOUSE"


def _split_name(name: str | None) -> tuple[str, str]:
    if not name:
        return "VERIFY", ""
    last, _, first = name.partition(",")
    return last.strip() or "VERIFY", first.strip().split(" ")[0] if first.strip() else ""


def corrected_claim(
    original: Mapping[str, Any],
    changes: Sequence[FieldChange],
    adjudication: Mapping[str, Any],
    profile: BillingProfile,
    *,
    interchange_control: int,
    created: str,
) -> tuple[dict[str, Any], str]:
    """The replacement Claim record and its 837P text."""
    fixed = apply_changes(original, changes)
    fixed["status"] = "replacement"
    fixed["frequency_code"] = "7"
    fixed["payer_claim_control_number"] = adjudication.get("payer_claim_control_number")
    last, first = _split_name(adjudication.get("patient_name"))
    parties = Parties(
        sender_id=profile.sender_id,
        receiver_id=profile.receiver_id,
        submitter_name=profile.name,
        receiver_name=profile.receiver_name,
        billing_provider_name=profile.name,
        billing_provider_npi=profile.npi or adjudication.get("payee_npi") or "0000000000",
        billing_provider_tax_id=profile.tax_id,
        billing_address=profile.address,
        subscriber_last=last,
        subscriber_first=first,
    )
    text = write_837p(cast("ClaimDict", fixed), parties, interchange_control=interchange_control, created=created)
    return fixed, text


def appeal_letter(
    adjudication: Mapping[str, Any],
    original: Mapping[str, Any] | None,
    denials: Sequence[Categorized],
    descriptions: Mapping[str, str],
    evidence_lines: Sequence[str],
    profile: BillingProfile,
) -> str:
    """A reconsideration request for the denied adjustments, evidence listed as attachments."""
    a = adjudication
    total = round(sum(c.amount for c in denials), 2)
    lines = [
        f"{profile.name}",
        f"To: {a.get('payer_name') or a.get('payer_id') or 'the payer'} - claims reconsideration / appeals",
        f"Date: {a.get('payment_date') or ''}",
        "",
        "Re: request for reconsideration",
        f"  Patient: {a.get('patient_name') or ''}   Member id: {a.get('member_id') or ''}",
        f"  Claim (patient control number): {a.get('claim_id')}",
        f"  Payer claim control number: {a.get('payer_claim_control_number') or ''}",
        f"  Date(s) of service: {(original or {}).get('service_date') or a.get('service_date') or ''}",
        f"  Amount in question: ${total:,.2f}",
        "",
        "The remittance advice shows the following adjustments, which we ask you to reconsider:",
    ]
    for c in denials:
        where = "claim" if c.line == 0 else f"line {c.line} ({c.procedure})"
        desc = descriptions.get(c.carc, "")
        rarcs = f" Remarks: {', '.join(c.rarcs)}." if c.rarcs else ""
        lines.append(f"  - {where}: {c.group}-{c.carc} ${c.amount:,.2f}: {desc}{rarcs}")
    lines += ["", "Enclosed in support of this request:"]
    lines += [f"  - {e}" for e in evidence_lines] or ["  - (evidence to be attached by the billing office)"]
    lines += [
        "",
        "We believe the services were billed correctly and are payable under the member's plan.",
        "Please reprocess the claim, or tell us what else you need.",
        "",
        "Sincerely,",
        "Billing office",
    ]
    return "\n".join(lines) + "\n"


def posting_document(kind: str, adjudication: Mapping[str, Any], items: Sequence[Categorized]) -> str:
    """The JSON a PMS posts once a person approves: a patient transfer or a write-off."""
    doc = {
        "kind": kind,
        "claim_id": adjudication.get("claim_id"),
        "payer_claim_control_number": adjudication.get("payer_claim_control_number"),
        "payer_id": adjudication.get("payer_id"),
        "payment_date": adjudication.get("payment_date"),
        "amount": round(sum(c.amount for c in items), 2),
        "adjustments": [
            {"line": c.line, "procedure": c.procedure, "group": c.group, "carc": c.carc, "amount": c.amount}
            for c in items
        ],
    }
    return json.dumps(doc, sort_keys=True)


def _money(value: Any) -> dict[str, Any] | None:
    return None if value is None else {"value": round(float(value), 2), "currency": "USD"}


def _coding(c: Mapping[str, Any], default_system: str) -> dict[str, Any]:
    out = {"system": c.get("system") or default_system, "code": c.get("code")}
    if c.get("display"):
        out["display"] = c["display"]
    return out


def claim_resource(
    fixed: Mapping[str, Any], adjudication: Mapping[str, Any], profile: BillingProfile, *, draft_id: str, created: str
) -> dict[str, Any]:
    """The replacement claim (``fixed``, as :func:`corrected_claim` returns it) as a FHIR R4 Claim.

    Built from the same record as the 837P draft, so both show the same lines and codes. Status
    ``draft``: the EHR write-back may show it before sign-off, never as an active claim. The
    payer's claim control number (CLP07) is the ``related`` claim it replaces, with frequency
    code 7 (replacement) as the relationship. References are logical (identifier) ones, as in
    the other drafts: the EHR resolves patient, provider and payer in its own records."""
    pid = str(fixed["practice_id"])
    diagnoses = list(fixed.get("diagnoses") or [])
    dx_seq = list(range(1, min(len(diagnoses), 4) + 1))
    items: list[dict[str, Any]] = []
    for n, line in enumerate(fixed.get("lines") or [], 1):
        proc = line.get("procedure") or {}
        item: dict[str, Any] = {
            "sequence": n,
            "productOrService": {"coding": [_coding(proc, CPT)]},
        }
        if line.get("modifiers"):
            item["modifier"] = [{"coding": [{"system": CPT, "code": m}]} for m in line["modifiers"]]
        if dx_seq:
            item["diagnosisSequence"] = dx_seq
        if line.get("service_date") or fixed.get("service_date"):
            item["servicedDate"] = line.get("service_date") or fixed.get("service_date")
        if fixed.get("place_of_service"):
            item["locationCodeableConcept"] = {
                "coding": [{"system": PLACE_OF_SERVICE, "code": fixed["place_of_service"]}]
            }
        if line.get("units") is not None:
            item["quantity"] = {"value": float(line["units"])}
        if line.get("charge") is not None:
            item["net"] = _money(line["charge"])
        items.append(item)
    pccn = fixed.get("payer_claim_control_number") or adjudication.get("payer_claim_control_number")
    frequency = str(fixed.get("frequency_code") or "7")
    member = fixed.get("member_id") or adjudication.get("member_id")
    payer_id = fixed.get("payer_id") or adjudication.get("payer_id")
    # Claim.patient is required: the 837's patient, else the 835's, else a placeholder a person sees
    patient = fixed.get("patient_id") or adjudication.get("patient_id") or "VERIFY"
    resource: dict[str, Any] = {
        "resourceType": "Claim",
        "identifier": [
            {"system": "urn:practiceflow:draft", "value": draft_id},
            {"system": f"urn:practiceflow:{pid}:claim", "value": str(fixed["claim_id"])},
        ],
        "status": "draft",
        "type": {"coding": [{"system": CLAIM_TYPE, "code": "professional"}]},
        "use": "claim",
        "patient": {"identifier": {"system": f"urn:practiceflow:{pid}:patient", "value": str(patient)}},
        "created": created,
        "provider": {
            "identifier": {"system": NPI, "value": profile.npi or adjudication.get("payee_npi") or "0000000000"},
            "display": profile.name,
        },
        "insurer": {
            "identifier": {"system": "urn:x12:payer-id", "value": str(payer_id or "VERIFY")},
            **({"display": fixed.get("payer_name")} if fixed.get("payer_name") else {}),
        },
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "related": [
            {
                "claim": {"identifier": {"system": "urn:x12:clp07", "value": str(pccn)}},
                "relationship": {
                    "coding": [
                        {"system": RELATED_CLAIM, "code": "prior"},
                        {"system": FREQUENCY_SYSTEM, "code": frequency, "display": "Replacement of prior claim"},
                    ]
                },
                "reference": {"system": "urn:x12:clp07", "value": str(pccn)},
            }
        ],
        "insurance": [
            {
                "sequence": 1,
                "focal": True,
                "coverage": {
                    "identifier": {"system": f"urn:practiceflow:{pid}:member-id", "value": str(member or "VERIFY")}
                },
            }
        ],
    }
    if diagnoses:
        resource["diagnosis"] = [
            {"sequence": i, "diagnosisCodeableConcept": {"coding": [_coding(dx, "http://hl7.org/fhir/sid/icd-10-cm")]}}
            for i, dx in enumerate(diagnoses, 1)
        ]
    if items:
        resource["item"] = items
    if fixed.get("total_charge") is not None:
        resource["total"] = _money(fixed["total_charge"])
    Claim.model_validate(resource)  # refuses a malformed draft here, not in the EHR
    return resource
