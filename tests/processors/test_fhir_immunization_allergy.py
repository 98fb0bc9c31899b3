"""FHIR Immunization and AllergyIntolerance become the same records the HL7 feed
gives for VXU^V04 and AL1 (issue 14), so both feeds fill one immunization history and
one allergy list."""

from __future__ import annotations

import json

from fastavro.validation import validate

from practiceflow.processors.fhir import normalize_fhir
from practiceflow.schemas.avro_gen import load_parsed

IMMUNIZATION = {
    "resourceType": "Immunization",
    "id": "imm-1",
    "status": "completed",
    "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "08", "display": "Hep B"}]},
    "patient": {"reference": "Patient/p1"},
    "occurrenceDateTime": "2024-03-01",
    "primarySource": True,
    "manufacturer": {"display": "Merck"},
    "lotNumber": "LOT123",
    "expirationDate": "2025-01-01",
    "site": {"coding": [{"code": "LT", "display": "Left Thigh"}]},
    "route": {"coding": [{"code": "IM", "display": "Intramuscular"}]},
    "doseQuantity": {"value": 0.5, "unit": "mL"},
    "performer": [{"actor": {"display": "Nurse Nancy"}}],
    "programEligibility": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0064", "code": "V02", "display": "Medicaid"}]}
    ],
    "fundingSource": {"coding": [{"code": "VXC1", "display": "Federal funds"}]},
    "education": [{"documentType": "253088698300003511070517", "presentationDate": "2024-03-01"}],
}

ALLERGY = {
    "resourceType": "AllergyIntolerance",
    "id": "al-1",
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]
    },
    "type": "allergy",
    "category": ["medication"],
    "criticality": "high",
    "code": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "70618", "display": "Penicillin"}]
    },
    "patient": {"reference": "Patient/p1"},
    "onsetDateTime": "2020-01-01",
    "reaction": [{"manifestation": [{"text": "Hives"}, {"text": "Anaphylaxis"}], "severity": "severe"}],
}


def _one(resource: dict, record_type: str) -> dict:
    result = normalize_fhir(json.dumps(resource).encode(), "prac", 0)
    (rec,) = [r for r in result.records if r.record_type == record_type]
    validate(rec.value, load_parsed(record_type), raise_errors=True)
    assert rec.key == f"prac/p1/{resource['id']}"
    return rec.value


def test_immunization_resource():
    v = _one(IMMUNIZATION, "Immunization")
    assert v["vaccine"]["code"] == "08" and v["status"] == "completed" and v["administered_at"] == "2024-03-01"
    assert (v["amount"], v["amount_units"], v["lot_number"], v["expiration_date"]) == (
        0.5,
        "mL",
        "LOT123",
        "2025-01-01",
    )
    assert (v["manufacturer"]["display"], v["site"], v["route"], v["performer"]) == (
        "Merck",
        "Left Thigh",
        "Intramuscular",
        "Nurse Nancy",
    )
    assert v["primary_source"] is True
    assert (v["funding_eligibility"]["code"], v["funding_source"]["code"]) == ("V02", "VXC1")
    # the same LOINC codes the HL7 VXU's OBX carry
    assert [o["code"]["code"] for o in v["observations"]] == ["64994-7", "30963-3", "69764-9", "29769-7"]


def test_allergy_intolerance_resource():
    v = _one(ALLERGY, "AllergyIntolerance")
    assert v["allergen"]["display"] == "Penicillin" and v["category"] == "medication"
    assert (v["severity"], v["criticality"], v["reactions"]) == ("severe", "high", ["Hives", "Anaphylaxis"])
    assert (v["clinical_status"], v["identified_at"]) == ("active", "2020-01-01")
