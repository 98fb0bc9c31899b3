"""Fields the denial and prior-auth workflows need: claim use, outcome, authorization number."""

from __future__ import annotations

import json

from fastavro.validation import validate

from practiceflow.processors.fhir.normalize import normalize_fhir
from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.sampleday import x12 as gen
from practiceflow.sampleday.people import make_people
from practiceflow.schemas.avro_gen import load_parsed


def _one(raw: dict, record_type: str) -> dict:
    recs = [r.value for r in normalize_fhir(json.dumps(raw).encode(), "p", 0).records if r.record_type == record_type]
    assert len(recs) == 1
    assert validate(recs[0], load_parsed(record_type))
    return recs[0]


def test_fhir_preauthorization_claim_and_response():
    claim = _one(
        {
            "resourceType": "Claim",
            "id": "c1",
            "status": "active",
            "use": "preauthorization",
            "type": {"coding": [{"code": "professional"}]},
            "created": "2026-11-27",
            "patient": {"reference": "Patient/p1"},
            "provider": {"display": "Demo Clinic"},
            "priority": {"coding": [{"code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "cov"}}],
        },
        "Claim",
    )
    assert claim["use"] == "preauthorization"
    resp = _one(
        {
            "resourceType": "ClaimResponse",
            "id": "r1",
            "status": "active",
            "use": "preauthorization",
            "type": {"coding": [{"code": "professional"}]},
            "created": "2026-11-27",
            "outcome": "complete",
            "patient": {"reference": "Patient/p1"},
            "insurer": {"display": "Payer"},
            "request": {"reference": "Claim/c1"},
            "preAuthRef": "AUTH-778",
        },
        "ClaimAdjudication",
    )
    assert (resp["outcome"], resp["authorization_number"], resp["status_code"]) == ("complete", "AUTH-778", None)


def test_835_prior_auth_reference():
    people = make_people(1, 1)
    import random

    era, _ = gen.remittance_835([("CLM1", people[0], 100.0, "20261127")], 5, "20261127", random.Random(1))
    era = era.replace("DTM*232*", "REF*G1*PA12345~\nDTM*232*", 1)
    (adj,) = [r.value for r in normalize_x12(era.encode(), "p", 0).records if r.record_type == "ClaimAdjudication"]
    assert adj["authorization_number"] == "PA12345" and adj["outcome"] is None
