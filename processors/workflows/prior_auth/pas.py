"""The Da Vinci PAS request Bundle (FHIR R4, validated by fhir.resources R4B).

Da Vinci Prior Authorization Support (PAS, http://hl7.org/fhir/us/davinci-pas) submits a
prior authorization as a ``Bundle`` (type ``collection``) whose first entry is a ``Claim``
with ``use = preauthorization``, followed by the resources it references: the Patient,
the Coverage, the insurer and requesting provider, the ServiceRequest or
MedicationRequest being authorized and the Conditions behind it. Each criterion's
evidence travels as a ``Claim.supportingInfo`` entry (category ``info``) naming the
criterion and its status, so the payer sees the same per-criterion picture as the
clinician. The bundle is built as plain JSON and then parsed with the fhir.resources
models, so a draft that would not validate is never produced (:class:`PasError`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from practiceflow.processors.workflows.prior_auth.codes import dotted
from practiceflow.processors.workflows.prior_auth.evidence import CriterionResult

PAS_BUNDLE_PROFILE: Final = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle"
PAS_CLAIM_PROFILE: Final = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claim"
CPT: Final = "http://www.ama-assn.org/go/cpt"
HCPCS: Final = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"


class PasError(ValueError):
    """The bundle does not validate as FHIR R4 (the draft is not produced)."""


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _fhir_id(s: str) -> str:
    """A FHIR id ([A-Za-z0-9\\-.]{1,64}) from one of our ids."""
    out = "".join(c if c.isalnum() or c in "-." else "-" for c in s)[:64]
    return out or "x"


def pas_bundle(
    *,
    authorization_id: str,
    created: str,
    patient: Mapping[str, Any],
    coverage: Mapping[str, Any] | None,
    order: Mapping[str, Any],
    order_type: str,
    procedure: tuple[str, str, str | None],  # system, code, display
    diagnoses: Sequence[str],
    requester: tuple[str, str | None],  # name, NPI
    results: Sequence[CriterionResult],
    place_of_service: str,
) -> str:
    """The PAS request Bundle as JSON text (validated)."""
    aid = _fhir_id(authorization_id)
    pid = _fhir_id(str(patient.get("patient_id") or "patient"))
    cov_id = _fhir_id(str((coverage or {}).get("coverage_id") or "unknown"))
    payer_id = str((coverage or {}).get("payer_id") or "unknown")
    payer_name = (coverage or {}).get("payer_name") or payer_id
    req_id = _fhir_id(str(order.get("order_id")))
    system, code, display = procedure
    resources: list[dict[str, Any]] = []
    pat: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"value": str(patient.get("patient_id"))}],
    }
    if patient.get("family_name") or patient.get("given_names"):
        pat["name"] = [{"family": patient.get("family_name"), "given": list(patient.get("given_names") or [])}]
    if patient.get("birth_date"):
        pat["birthDate"] = str(patient["birth_date"])[:10]
    sex = {"M": "male", "F": "female", "O": "other"}.get(str(patient.get("sex") or "").upper()[:1])
    if sex:
        pat["gender"] = sex
    insurer: dict[str, Any] = {
        "resourceType": "Organization",
        "id": _fhir_id(f"payer-{payer_id}"),
        "identifier": [{"system": "urn:x12:payer-id", "value": payer_id}],
        "name": payer_name,
    }
    npi = requester[1]
    prac: dict[str, Any] = {"resourceType": "Practitioner", "id": "requester", "name": [{"text": requester[0]}]}
    if npi:
        prac["identifier"] = [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]
    cov: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": cov_id,
        "status": "active",
        "beneficiary": _ref("Patient", pid),
        "payor": [_ref("Organization", insurer["id"])],
    }
    if coverage and coverage.get("member_id"):
        cov["subscriberId"] = str(coverage["member_id"])
    concept = {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}]}
    if order_type == "MedicationOrder":
        service: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": req_id,
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": concept,
            "subject": _ref("Patient", pid),
            "requester": _ref("Practitioner", "requester"),
        }
        if order.get("written_at"):
            service["authoredOn"] = str(order["written_at"])[:10]
    else:
        service = {
            "resourceType": "ServiceRequest",
            "id": req_id,
            "status": "draft",
            "intent": "order",
            "code": concept,
            "subject": _ref("Patient", pid),
            "requester": _ref("Practitioner", "requester"),
        }
        if order.get("ordered_at"):
            service["authoredOn"] = str(order["ordered_at"])[:10]
    supporting: list[dict[str, Any]] = []
    for seq, r in enumerate(results, 1):
        text = f"{r.criterion.id}@{r.criterion.version} {r.status}: {r.summary}"
        if r.status != "met":
            text += f" (would satisfy: {r.criterion.satisfy})"
        supporting.append(
            {
                "sequence": seq,
                "category": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/claiminformationcategory", "code": "info"}
                    ]
                },
                "code": {"text": r.criterion.id},
                "valueString": text[:1000],
            }
        )
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "id": aid,
        "meta": {"profile": [PAS_CLAIM_PROFILE]},
        "identifier": [{"system": "urn:practiceflow:authorization", "value": authorization_id}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "preauthorization",
        "patient": _ref("Patient", pid),
        "created": created,
        "insurer": _ref("Organization", insurer["id"]),
        "provider": _ref("Practitioner", "requester"),
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": _ref("Coverage", cov_id)}],
        "diagnosis": [
            {"sequence": i, "diagnosisCodeableConcept": {"coding": [{"system": ICD10CM, "code": dotted(dx)}]}}
            for i, dx in enumerate(diagnoses, 1)
        ],
        "item": [
            {
                "sequence": 1,
                "productOrService": concept,
                "locationCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
                            "code": place_of_service,
                        }
                    ]
                },
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-requestedService",
                        "valueReference": _ref(service["resourceType"], req_id),
                    }
                ],
                **({"diagnosisSequence": list(range(1, min(len(diagnoses), 4) + 1))} if diagnoses else {}),
            }
        ],
    }
    if supporting:
        claim["supportingInfo"] = supporting
        claim["item"][0]["informationSequence"] = [s["sequence"] for s in supporting]
    resources = [claim, pat, cov, insurer, prac, service]
    bundle = {
        "resourceType": "Bundle",
        "id": aid,
        "meta": {"profile": [PAS_BUNDLE_PROFILE]},
        "identifier": {"system": "urn:practiceflow:authorization", "value": authorization_id},
        "type": "collection",
        "timestamp": created,
        "entry": [{"fullUrl": f"urn:practiceflow:{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        raise PasError(f"PAS bundle does not validate: {exc.errors()[:2]}") from exc
    return json.dumps(bundle, sort_keys=True, separators=(",", ":"))
