"""The FHIR normalizer over the public sample corpus (../shared/data/fhir).

Every file either normalizes (and every record validates against its Avro schema)
or raises Rejected; nothing else. Files under invalid/ must not yield records from
their invalid resource. Known files get specific expectations. When the corpus is
absent the parameter lists are empty (no explicit skip).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from fastavro.validation import validate

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.fhir import normalize_fhir
from practiceflow.schemas.avro_gen import load_parsed
from tests.fixtures import outcome_totals, require_corpus, shared_data_dir
from tests.processors import corpus_outcomes

pytestmark = pytest.mark.corpus

PRACTICE = "corpus"
_REPO = Path(__file__).resolve().parents[2]


DATA = shared_data_dir()
FHIR = DATA / "fhir" if DATA else None
VALID_FILES = sorted(FHIR.glob("*.json")) if FHIR and FHIR.is_dir() else []
INVALID_FILES = sorted((FHIR / "invalid").glob("*.json")) if FHIR and (FHIR / "invalid").is_dir() else []


def _present(*names: str) -> list[str]:
    return [n for n in names if FHIR and (FHIR / n).is_file()]


def run(path: Path) -> NormalizeResult:
    result = normalize_fhir(path.read_bytes(), PRACTICE, 1_700_000_000_000)
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.value["source"]["message_id"] == result.message_id
    return result


def load(name: str) -> NormalizeResult:
    return run(FHIR / name)  # type: ignore[operator]


def values(result: NormalizeResult, record_type: str) -> list[dict]:
    return [r.value for r in result.records if r.record_type == record_type]


# --------------------------------------------------------------------------- every file
@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_corpus_file_normalizes_or_is_rejected(path):
    try:
        result = run(path)
    except Rejected as e:
        assert e.reason_code != "mapping_error", e.reason
        return
    assert not any("mapping_error" in w for w in result.warnings)
    again = run(path)  # pure and resend-stable
    assert again.message_id == result.message_id
    assert [r.key for r in again.records] == [r.key for r in result.records]


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_corpus_file_yields_no_records_from_it(path):
    try:
        result = run(path)
    except Rejected as e:
        assert e.reason_code != "mapping_error", e.reason
        return
    # not rejected: only acceptable for a lenient Bundle that dropped the invalid entry
    assert any("invalid entry skipped" in w for w in result.warnings), result.warnings


def test_every_file_has_its_expected_outcome():
    """Per file: normalized or the exact rejection code (the README's corpus table); fails,
    rather than collecting nothing, when the corpus folder is missing."""
    fhir_dir = require_corpus("fhir")
    actual = {}
    for path in sorted(fhir_dir.glob("*.json")) + sorted((fhir_dir / "invalid").glob("*.json")):
        try:
            run(path)
        except Rejected as exc:
            actual[str(path.relative_to(fhir_dir))] = f"rejected:{exc.reason_code}"
        else:
            actual[str(path.relative_to(fhir_dir))] = "normalized"
    assert actual == corpus_outcomes.FHIR
    assert outcome_totals(dict(actual)) == (30, 5)  # README: 35 files, 30 normalized, the 5 in invalid/


_INVALID_CODES = {
    "davinci_pas_request_bundle_no_entries.json": "empty_bundle",
    "observation_invalid_decimal_value.json": "invalid_decimal",
    "observation_invalid_status_code.json": "invalid_resource",
    "observation_missing_required_code.json": "invalid_resource",
    "patient_empty_resourcetype.json": "missing_resource_type",
}


@pytest.mark.parametrize("name", [n for n in _INVALID_CODES if FHIR and (FHIR / "invalid" / n).is_file()])
def test_known_invalid_files_reason_codes(name):
    with pytest.raises(Rejected) as info:
        run(FHIR / "invalid" / name)  # type: ignore[operator]
    assert info.value.reason_code == _INVALID_CODES[name]


# --------------------------------------------------------------------------- known files
@pytest.mark.parametrize("name", _present("patient_example_chalmers.json"))
def test_chalmers_patient(name):
    result = load(name)
    assert result.message_type == "Patient"
    assert result.message_id == hashlib.sha256(b"Patient|example|1").hexdigest()[:32]
    [p] = values(result, "Patient")
    assert p["patient_id"] == "example" and p["family_name"] == "Chalmers"
    assert p["given_names"] == ["Peter", "James"]
    assert p["birth_date"] == "1974-12-25" and p["sex"] == "male" and p["deceased"] is False
    assert {"value": "12345", "system": "urn:oid:1.2.36.146.595.217.0.1", "type": "MR"} in p["identifiers"]
    assert p["address"]["city"] == "PleasantVille" and p["address"]["postal_code"] == "3999"
    assert "(03) 5555 6473" in p["phones"] and "(03) 5555 8834" not in p["phones"]  # 'old' number dropped
    # meta.lastUpdated "2000-01-01T00:00:00" has no timezone: accepted as UTC, with a warning
    assert p["source"]["sent_at"] == "2000-01-01T00:00:00Z"
    assert any("no timezone" in w for w in result.warnings)


@pytest.mark.parametrize("name", _present("observation_vitals_blood_pressure_panel.json"))
def test_blood_pressure_panel(name):
    result = load(name)
    obs = values(result, "Observation")
    assert [
        (o["observation_id"], o["code"]["code"], o["value_numeric"], o["units"], o["abnormal_flags"]) for o in obs
    ] == [
        ("blood-pressure/8480-6", "8480-6", 107.0, "mmHg", ["N"]),
        ("blood-pressure/8462-4", "8462-4", 60.0, "mmHg", ["L"]),
    ]
    assert all(o["patient_id"] == "example" and o["effective_at"] == "2012-09-17" for o in obs)
    assert all(o["order_id"] == "1234" for o in obs)  # basedOn identifier
    assert any("interpretation" in w for w in result.warnings)  # STU3-style single interpretation


@pytest.mark.parametrize("name", _present("observation_lab_glucose_f001_high.json"))
def test_glucose_high(name):
    [o] = values(load(name), "Observation")
    assert o["code"]["code"] == "15074-8" and o["value_numeric"] == 6.3 and o["units"] == "mmol/l"
    assert o["abnormal_flags"] == ["H"] and o["reference_range"] == "3.1-6.2 mmol/l"
    assert o["patient_id"] == "f001"


@pytest.mark.parametrize("name", _present("observation_vitals_body_temperature_entered_in_error.json"))
def test_entered_in_error(name):
    [o] = values(load(name), "Observation")
    assert o["status"] == "entered-in-error"


@pytest.mark.parametrize("name", _present("davinci_pas_response_bundle_approved.json"))
def test_pas_response_bundle(name):
    result = load(name)
    assert result.message_type == "Bundle/collection"
    [adj] = values(result, "ClaimAdjudication")
    assert adj["claim_id"] == "111099"  # no request reference: the PAS trace-number identifier
    assert adj["adjudication_id"] == "ReferralAuthorizationResponseExample"
    assert adj["patient_id"] == "SubscriberExample" and adj["patient_name"] == "SMITH, JOE"
    assert adj["payer_name"] == "MARYLAND CAPITAL INSURANCE COMPANY" and adj["payee_npi"] == "8189991234"
    assert adj["outcome"] == "complete" and adj["status_code"] is None
    assert adj["use"] == "preauthorization" and adj["authorization_number"] == "AUTH0001"  # reviewAction number
    [line] = adj["lines"]
    assert line["remark_codes"] == ["HCR01:A1"] and line["procedure"]["code"] == "3"
    assert adj["source"]["sent_at"] == "2005-05-02T11:02:00+05:00"
    assert {r.record_type for r in result.records} == {"ClaimAdjudication", "Patient"}


@pytest.mark.parametrize("name", _present("davinci_pas_request_bundle_v110.json"))
def test_pas_request_bundle(name):
    result = load(name)
    assert Counter(r.record_type for r in result.records) == Counter(
        {"Claim": 1, "Coverage": 1, "Patient": 1, "Order": 1}
    )
    [claim] = values(result, "Claim")
    assert claim["claim_id"] == "ReferralAuthorizationExample" and claim["patient_id"] == "SubscriberExample"
    assert claim["payer_name"] == "MARYLAND CAPITAL INSURANCE COMPANY" and claim["payer_id"] == "789312"
    assert [d["code"] for d in claim["diagnoses"]] == ["G89.4"]
    assert claim["lines"][0]["procedure"]["code"] == "3"
    [cov] = values(result, "Coverage")
    assert cov["payer_name"] == "MARYLAND CAPITAL INSURANCE COMPANY" and cov["patient_id"] == "SubscriberExample"
    assert any("Organization x2" in w for w in result.warnings)


@pytest.mark.parametrize("name", _present("davinci_pas_request_bundle_v110.json"))
def test_pas_request_and_inquiry_are_distinct_messages(name):
    if not _present("davinci_pas_inquiry_request_bundle_v110.json"):
        return
    assert load(name).message_id != load("davinci_pas_inquiry_request_bundle_v110.json").message_id


@pytest.mark.parametrize("name", _present("explanationofbenefit_example_eb3500.json"))
def test_eob(name):
    [adj] = values(load(name), "ClaimAdjudication")
    assert adj["claim_id"] == "100150" and adj["adjudication_id"] == "EB3500" and adj["patient_id"] == "pat1"
    assert (adj["total_charge"], adj["paid"], adj["outcome"]) == (135.57, 96.0, "complete")
    assert adj["payer_claim_control_number"] == "987654321"
    assert [(ln["procedure"]["code"], ln["charge"], ln["paid"]) for ln in adj["lines"]] == [
        ("1205", 135.57, 96.0),
        ("group", 200.0, 180.0),
    ]


@pytest.mark.parametrize("name", _present("claimresponse_example_r3500.json"))
def test_claim_response(name):
    [adj] = values(load(name), "ClaimAdjudication")
    assert adj["claim_id"] == "15476332402" and adj["paid"] == 100.47 and adj["patient_responsibility"] == 10.0
    assert adj["payment_trace"] == "201408-2-1569478" and adj["payment_date"] == "2014-08-31"
    [line] = adj["lines"]
    assert line["adjustments"] == [{"group": "PR", "reason": "3", "amount": 10.0, "quantity": None}]
    assert line["remark_codes"] == ["ar002"]


@pytest.mark.parametrize("name", _present("medicationrequest_medrx0302_contained_medication.json"))
def test_medication_request_contained(name):
    [m] = values(load(name), "MedicationOrder")
    assert m["medication"] == {
        "system": "http://snomed.info/sct",
        "code": "324252006",
        "display": "Azithromycin 250mg capsule (product)",
    }
    assert (m["dose"], m["dose_units"], m["route"], m["refills"], m["quantity"]) == (
        "2",
        "TAB",
        "Oral Route",
        1,
        "6 TAB",
    )
    assert m["prescriber"] == "Patrick Pump" and m["patient_id"] == "pat1"


@pytest.mark.parametrize("name", _present("documentreference_inline_base64_attachment.json"))
def test_document_inline_base64(name):
    result = load(name)
    [doc] = values(result, "Document")
    assert doc["sha256"] == hashlib.sha256(b"This is a test").hexdigest()
    assert doc["content_type"] == "application/hl7-v3+xml" and doc["text"] is None  # not text/plain
    assert doc["title"] == "Physical" and doc["patient_id"] == "xcda"


@pytest.mark.parametrize("name", _present("bundle_transaction_with_internal_references.json"))
def test_transaction_internal_references(name):
    result = load(name)
    [p] = values(result, "Patient")
    [enc] = values(result, "Encounter")
    assert enc["patient_id"] == p["patient_id"] == "e11037dd-9b76-42bb-92cb-9109a7b4ab71"
    assert enc["attending_provider"] == "Labadie908, Rebecca981"  # urn:uuid Practitioner in the bundle
    # Observations use a conditional reference Patient?identifier=...|234234 with no match in the bundle
    assert {o["patient_id"] for o in values(result, "Observation")} == {"234234"}


@pytest.mark.parametrize(
    "name",
    _present(
        "synthea_r4_bundle_clemente_kreiger_adult_male.json",
        "synthea_r4_bundle_alexis_toy_pediatric_allergies.json",
        "synthea_r4_bundle_brent_beer_imaging_goals.json",
    ),
)
def test_synthea_bundles(name):
    result = load(name)
    raw = json.loads((FHIR / name).read_text(encoding="utf-8-sig"))  # type: ignore[operator]
    types = Counter(e["resource"]["resourceType"] for e in raw["entry"])
    [p] = values(result, "Patient")
    pid = p["patient_id"]
    assert all(r.value.get("patient_id") == pid for r in result.records)
    got = Counter(r.record_type for r in result.records)
    assert got["Claim"] == types["Claim"] and got["ClaimAdjudication"] == types["ExplanationOfBenefit"]
    assert got["Encounter"] == types["Encounter"] and got["Condition"] == types["Condition"]
    assert got["MedicationOrder"] == types.get("MedicationRequest", 0)
    assert got["Observation"] >= types["Observation"]  # BP panels fan out to components
    # issue 14: the same Immunization / AllergyIntolerance records as the HL7 feed gives
    assert got["Immunization"] == types["Immunization"] > 0
    assert got["AllergyIntolerance"] == types.get("AllergyIntolerance", 0)
    assert all(i["vaccine"]["code"] and i["status"] == "completed" for i in values(result, "Immunization"))
    eobs = values(result, "ClaimAdjudication")
    claim_ids = {c["claim_id"] for c in values(result, "Claim")}
    assert all(e["claim_id"] in claim_ids for e in eobs)
    assert all(e["paid"] is not None for e in eobs)
