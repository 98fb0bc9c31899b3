"""FHIR R4 Patient and Coverage drafts from a clean eligibility check, for write-back to the EHR.

A draft is what a person signs off before anything is written to the EHR: the intake's
demographics as the patient gave them, and the coverage as the payer confirmed it (the 271's
member id, plan and dates win over what the patient typed). Both are validated by the
same fhir.resources R4B models and R4 value-set checks the FHIR normalizer uses
(``processors/fhir/_validate.py``), so a draft the EHR would refuse is a bug here, not there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from practiceflow.processors.fhir._validate import validate_resource

__all__ = ["coverage_resource", "patient_resource"]

_GENDER = {"F": "female", "M": "male", "U": "unknown"}
# http://terminology.hl7.org/CodeSystem/subscriber-relationship
_RELATIONSHIP = {"self": "self", "spouse": "spouse", "child": "child", "other": "other"}


def _fhir_id(value: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) derived from ours."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in value)
    return cleaned[:64] or "draft"


def patient_resource(intake: Mapping[str, Any], patient_id: str | None, mrn_system: str) -> dict[str, Any]:
    """The Patient as the intake form gives it; ``patient_id`` is the matched chart (None: new)."""
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": _fhir_id(patient_id or f"intake-{intake['submission_id']}"),
        "active": True,
        "name": [{"use": "official", "family": intake["family_name"], "given": [intake["given_name"]]}],
        "birthDate": intake["birth_date"],
    }
    if patient_id:
        res["identifier"] = [{"system": mrn_system, "value": patient_id}]
    if intake.get("sex") in _GENDER:
        res["gender"] = _GENDER[intake["sex"]]
    telecom = []
    if intake.get("phone"):
        telecom.append({"system": "phone", "value": intake["phone"], "use": "mobile"})
    if intake.get("email"):
        telecom.append({"system": "email", "value": intake["email"]})
    if telecom:
        res["telecom"] = telecom
    addr = intake.get("address")
    if addr:
        a = {k: v for k, v in (("city", addr.get("city")), ("state", addr.get("state"))) if v}
        if addr.get("line"):
            a["line"] = list(addr["line"])
        if addr.get("postal_code"):
            a["postalCode"] = addr["postal_code"]
        if a:
            res["address"] = [{"use": "home", **a}]
    validated, _ = validate_resource(res, "Patient")
    return validated


def coverage_resource(
    intake: Mapping[str, Any],
    response: Mapping[str, Any],
    patient_ref: str,
    payer_id: str,
    payer_name: str,
) -> dict[str, Any]:
    """The Coverage the payer confirmed (271) for ``patient_ref`` (``Patient/<id>``)."""
    member = response.get("member_id") or intake.get("insurance_member_id") or ""
    rel = _RELATIONSHIP.get(intake.get("subscriber_relationship") or "self", "other")
    res: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": _fhir_id(f"cov-{payer_id}-{intake['submission_id']}"),
        "status": "active",
        "subscriberId": member,
        "beneficiary": {"reference": patient_ref},
        "relationship": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": rel}]
        },
        "payor": [
            {
                "identifier": {"system": "urn:x12:payer-id", "value": payer_id},
                "display": response.get("payer_name") or payer_name,
            }
        ],
    }
    period = {k: v for k, v in (("start", response.get("plan_begin")), ("end", response.get("plan_end"))) if v}
    if period:
        res["period"] = period
    classes = []
    if intake.get("insurance_group"):
        classes.append(
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group"}]
                },
                "value": intake["insurance_group"],
            }
        )
    plans = [b.get("plan_description") for b in response.get("benefits") or [] if b.get("plan_description")]
    if plans:
        classes.append(
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]
                },
                "value": str(plans[0])[:64],
                "name": str(plans[0]),
            }
        )
    if classes:
        res["class"] = classes
    validated, _ = validate_resource(res, "Coverage")
    return validated


def as_body(resource: Mapping[str, Any]) -> str:
    """The draft body: canonical JSON (sorted keys), so a replay writes identical bytes."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"))
