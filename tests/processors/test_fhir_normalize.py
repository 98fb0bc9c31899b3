"""Unit tests for the FHIR normalizer, with resources written here (no corpus needed)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json

import pytest
from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings, strategies as st

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.fhir import normalize_fhir
from practiceflow.schemas.avro_gen import load_parsed

PRACTICE = "prac-1"


def norm(obj, *, raw: bytes | None = None) -> NormalizeResult:
    data = raw if raw is not None else json.dumps(obj).encode()
    result = normalize_fhir(data, PRACTICE, 1_700_000_000_000)
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.value["practice_id"] == PRACTICE
        assert rec.value["source"]["feed"] == "fhir"
        assert rec.value["source"]["message_id"] == result.message_id
        assert rec.key.startswith(PRACTICE + "/")
    return result


def rejected(obj=None, *, raw: bytes | None = None) -> Rejected:
    with pytest.raises(Rejected) as info:
        norm(obj, raw=raw)
    return info.value


def by_type(result: NormalizeResult, record_type: str) -> list[dict]:
    return [r.value for r in result.records if r.record_type == record_type]


# --------------------------------------------------------------------------- resources
def patient(pid="p1", **extra):
    r = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "3", "lastUpdated": "2024-05-01T10:00:00Z"},
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "urn:mrn",
                "value": "MRN77",
            },
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-11-2222"},
        ],
        "name": [
            {"use": "old", "family": "Oldname", "given": ["X"]},
            {"use": "official", "family": "Testpatient", "given": ["Alex", "J"]},
        ],
        "telecom": [
            {"system": "phone", "value": "555-0101", "use": "mobile", "rank": 2},
            {"system": "phone", "value": "555-0100", "use": "home", "rank": 1},
            {"system": "phone", "value": "555-9999", "use": "old"},
            {"system": "email", "value": "a@example.org"},
        ],
        "gender": "female",
        "birthDate": "1980-01-01",
        "address": [
            {
                "use": "home",
                "line": ["12 Main St"],
                "city": "Springfield",
                "state": "IL",
                "postalCode": "62701",
                "country": "US",
            }
        ],
        "deceasedBoolean": False,
    }
    r.update(extra)
    return r


def observation(oid="o1", subject="Patient/p1", **extra):
    r = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {
            "coding": [
                {"system": "urn:local", "code": "GLU"},
                {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"},
            ]
        },
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-05-01T07:00:00-05:00",
        "valueQuantity": {"value": 182, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        "interpretation": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}
        ],
        "referenceRange": [{"low": {"value": 70, "unit": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL"}}],
        "performer": [{"reference": "Practitioner/dr1", "display": "Dr. Welby"}],
        "note": [{"text": "Fasting specimen"}],
    }
    r.update(extra)
    return r


def bp_panel(oid="bp1", **extra):
    r = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-01",
        "interpretation": [{"coding": [{"code": "H"}]}],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 150, "unit": "mmHg"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "unit": "mmHg"},
                "interpretation": [{"coding": [{"code": "N"}]}],
            },
        ],
    }
    r.update(extra)
    return r


def bundle(btype, *resources, entries=None, **extra):
    b = {
        "resourceType": "Bundle",
        "type": btype,
        "entry": entries if entries is not None else [{"resource": r} for r in resources],
    }
    b.update(extra)
    return b


# --------------------------------------------------------------------------- parsing and rejection codes
@pytest.mark.parametrize(
    "raw,code",
    [
        (b"", "empty_payload"),
        (b"   \n", "empty_payload"),
        (b"\xef\xbb\xbf", "empty_payload"),
        (b"<Patient/>", "invalid_json"),
        (b'{"resourceType": "Patient",', "invalid_json"),
        (b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}', "invalid_json"),
        (b"[1, 2]", "not_json_object"),
        (b'"Patient"', "not_json_object"),
        (b"{}", "missing_resource_type"),
        (b'{"resourceType": ""}', "missing_resource_type"),
        (b'{"resourceType": 7}', "missing_resource_type"),
        (b'{"resourceType": "patient"}', "unknown_resource_type"),
        (b'{"resourceType": "Patinet"}', "unknown_resource_type"),
        (b"\xff\xfe{\x00}\x00", "invalid_encoding"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    ],
)
def test_parse_rejections(raw, code):
    assert rejected(raw=raw).reason_code == code


def test_bom_is_tolerated():
    raw = json.dumps(patient()).encode()
    assert norm(None, raw=b"\xef\xbb\xbf" + raw).message_id == norm(None, raw=raw).message_id


def test_validation_error_is_summarized():
    obs = observation()
    del obs["code"]
    err = rejected(obs)
    assert err.reason_code == "invalid_resource"
    assert "code" in err.reason and "required" in err.reason.lower()


def test_wrong_datatype_rejected():
    err = rejected(patient(birthDate="1980-13-45"))
    assert err.reason_code == "invalid_resource" and "birthDate" in err.reason


def test_extra_element_rejected():
    err = rejected(patient(favouriteColour="blue"))
    assert err.reason_code == "invalid_resource" and "favouriteColour" in err.reason


@pytest.mark.parametrize(
    "resource,field",
    [
        (observation(status="this_is_invalid"), "status"),
        (patient(gender="xx"), "gender"),
    ],
)
def test_required_binding_codes_checked(resource, field):
    err = rejected(resource)
    assert err.reason_code == "invalid_code" and field in err.reason


def test_unknown_contained_type_is_invalid_not_a_crash():
    obs = observation(contained=[{"resourceType": "NotAThing", "id": "x"}])
    assert rejected(obs).reason_code == "invalid_resource"


def test_over_precise_decimal_rejected_but_long_fraction_ok():
    raw = json.dumps(observation()).replace('"value": 182', '"value": 1234567890123456789.0123456789').encode()
    err = rejected(raw=raw)
    assert err.reason_code == "invalid_decimal" and "1234567890123456789.0123456789" in err.reason
    ok = json.dumps(observation()).replace('"value": 182', '"value": 0.010251436712759658').encode()
    [rec] = norm(None, raw=ok).records
    assert rec.value["value_numeric"] == pytest.approx(0.010251436712759658)


def test_unsupported_single_resource_is_zero_records_with_warning():
    for rt in ("Practitioner", "Organization", "Medication", "Provenance", "MedicinalProduct"):
        result = norm({"resourceType": rt, "id": "x1"})
        assert result.records == [] and result.warnings and rt in result.warnings[0]
        assert result.message_type == rt


# --------------------------------------------------------------------------- message ids
def test_message_id_from_type_id_version_and_resend_stable():
    a = norm(patient())
    b = norm(None, raw=json.dumps(patient(), indent=2).encode())  # re-serialized resend
    assert a.message_id == b.message_id
    v4 = patient()
    v4["meta"]["versionId"] = "4"
    assert norm(v4).message_id != a.message_id
    assert a.message_id == hashlib.sha256(b"Patient|p1|3").hexdigest()[:32]


def test_message_id_without_version_is_content_based():
    p = patient()
    del p["meta"]
    a, b = norm(p), norm(p)
    assert a.message_id == b.message_id
    p2 = copy.deepcopy(p)
    p2["birthDate"] = "1980-01-02"
    assert norm(p2).message_id != a.message_id  # an update without versionId is not a resend


def test_bundle_message_ids():
    b = bundle("collection", patient(), identifier={"system": "urn:s", "value": "B1"}, timestamp="2024-05-01T10:00:00Z")
    a = norm(b)
    again = norm(None, raw=json.dumps(b, indent=1).encode())
    assert a.message_id == again.message_id and a.message_type == "Bundle/collection"
    other = copy.deepcopy(b)
    other["meta"] = {"profile": ["http://example.org/inquiry"]}
    assert norm(other).message_id != a.message_id
    anon = bundle("collection", patient())
    assert norm(anon).message_id == norm(anon).message_id


# --------------------------------------------------------------------------- Patient
def test_patient_mapping():
    result = norm(patient())
    assert result.message_type == "Patient" and not result.warnings
    [rec] = result.records
    assert rec.record_type == "Patient" and rec.key == f"{PRACTICE}/p1/p1"
    v = rec.value
    assert v["patient_id"] == "p1"
    assert v["family_name"] == "Testpatient" and v["given_names"] == ["Alex", "J"]
    assert v["identifiers"][0] == {"value": "MRN77", "system": "urn:mrn", "type": "MR"}
    assert v["phones"] == ["555-0100", "555-0101"]
    assert v["sex"] == "female" and v["birth_date"] == "1980-01-01" and v["deceased"] is False
    assert v["address"]["postal_code"] == "62701"
    assert v["source"]["sent_at"] == "2024-05-01T10:00:00Z" and v["source"]["message_type"] == "Patient"
    assert v["event"] is None


def test_patient_link_replaces_and_deceased_datetime():
    p = patient(link=[{"other": {"reference": "Patient/old-7"}, "type": "replaces"}], deceasedDateTime="2024-01-01")
    del p["deceasedBoolean"]
    [v] = by_type(norm(p), "Patient")
    assert v["merged_from"] == ["old-7"] and v["deceased"] is True


def test_naive_instant_is_read_as_utc_with_warning():
    p = patient()
    p["meta"] = {"lastUpdated": "2000-01-01T00:00:00"}
    result = norm(p)
    assert any("no timezone" in w for w in result.warnings)
    assert result.records[0].value["source"]["sent_at"] == "2000-01-01T00:00:00Z"


# --------------------------------------------------------------------------- Observation
def test_observation_quantity():
    [v] = by_type(norm(observation()), "Observation")
    assert v["code"] == {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}
    assert v["value_type"] == "Quantity" and v["value"] == "182" and v["value_numeric"] == 182.0
    assert v["units"] == "mg/dL" and v["reference_range"] == "70-99 mg/dL"
    assert v["abnormal_flags"] == ["H"] and v["status"] == "final"
    assert v["effective_at"] == "2024-05-01T07:00:00-05:00" and v["performer"] == "Dr. Welby"
    assert v["notes"] == ["Fasting specimen"] and v["patient_id"] == "p1" and v["observation_id"] == "o1"


def test_observation_comparator_codeable_string_and_absent():
    o = observation(valueQuantity={"value": 5, "comparator": "<", "unit": "mg/dL"})
    [v] = by_type(norm(o), "Observation")
    assert v["value"] == "<5" and v["value_numeric"] == 5.0
    o = observation()
    del o["valueQuantity"]
    o["valueCodeableConcept"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}]
    }
    [v] = by_type(norm(o), "Observation")
    assert v["value_type"] == "CodeableConcept" and v["value"] == "Negative" and v["value_numeric"] is None
    del o["valueCodeableConcept"]
    o["valueString"] = "see report"
    [v] = by_type(norm(o), "Observation")
    assert (v["value_type"], v["value"]) == ("string", "see report")
    del o["valueString"]
    o["dataAbsentReason"] = {"text": "specimen hemolyzed"}
    [v] = by_type(norm(o), "Observation")
    assert v["value"] is None and "data absent: specimen hemolyzed" in v["notes"]


def test_observation_components_become_records():
    result = norm(bp_panel())
    obs = by_type(result, "Observation")
    assert [o["observation_id"] for o in obs] == ["bp1/8480-6", "bp1/8462-4"]
    sys_, dia = obs
    assert sys_["value_numeric"] == 150.0 and sys_["units"] == "mmHg" and sys_["code"]["code"] == "8480-6"
    assert sys_["abnormal_flags"] == ["H"]  # inherited from the panel
    assert dia["abnormal_flags"] == ["N"]  # its own
    assert all(o["effective_at"] == "2024-05-01" and o["status"] == "final" for o in obs)
    assert result.records[0].key == f"{PRACTICE}/p1/bp1/8480-6"


def test_observation_panel_with_own_value_keeps_parent_record():
    obs = by_type(norm(bp_panel(valueString="150/80")), "Observation")
    assert [o["observation_id"] for o in obs] == ["bp1", "bp1/8480-6", "bp1/8462-4"]


def test_entered_in_error_kept_as_status():
    [v] = by_type(norm(observation(status="entered-in-error")), "Observation")
    assert v["status"] == "entered-in-error"


def test_stu3_single_interpretation_is_repaired_with_warning():
    o = observation(interpretation={"coding": [{"code": "L"}]})
    result = norm(o)
    assert result.records[0].value["abnormal_flags"] == ["L"]
    assert any("interpretation" in w and "wrapped" in w for w in result.warnings)


def test_observation_subject_group_single_is_rejected():
    assert rejected(observation(subject="Group/g1")).reason_code == "missing_patient"
    o = observation()
    del o["subject"]
    assert rejected(o).reason_code == "missing_patient"


def test_contained_patient_and_logical_reference():
    o = observation(
        subject="#pat",
        contained=[
            {
                "resourceType": "Patient",
                "id": "pat",
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRN5"}],
            }
        ],
    )
    [v] = by_type(norm(o), "Observation")
    assert v["patient_id"] == "MRN5"
    o = observation()
    o["subject"] = {"identifier": {"system": "urn:mrn", "value": "MRN9"}}
    result = norm(o)
    assert result.records[0].value["patient_id"] == "MRN9"
    assert any("identifier" in w for w in result.warnings)


# --------------------------------------------------------------------------- other clinical types
def test_condition():
    c = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "Type 2 diabetes"}]
        },
        "onsetDateTime": "2019-03-01",
        "recordedDate": "2019-03-02",
    }
    [v] = by_type(norm(c), "Condition")
    assert v["condition_id"] == "c1" and v["code"]["code"] == "E11.9"
    assert (v["clinical_status"], v["verification_status"]) == ("active", "confirmed")
    assert (v["onset"], v["recorded_at"]) == ("2019-03-01", "2019-03-02")


def test_encounter():
    e = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": "Practitioner/x", "display": "Dr. Other"}},
            {
                "type": [{"coding": [{"code": "ATND"}]}],
                "individual": {"reference": "Practitioner/w", "display": "Dr. Welby"},
            },
        ],
        "period": {"start": "2024-05-01T09:00:00Z", "end": "2024-05-01T09:30:00Z"},
        "reasonCode": [{"text": "follow-up"}],
        "location": [{"location": {"reference": "Location/l1", "display": "Room 3"}}],
    }
    [v] = by_type(norm(e), "Encounter")
    assert v["encounter_class"] == "AMB" and v["attending_provider"] == "Dr. Welby"
    assert (v["admit_at"], v["discharge_at"]) == ("2024-05-01T09:00:00Z", "2024-05-01T09:30:00Z")
    assert v["reason"] == "follow-up" and v["location"] == "Room 3" and v["status"] == "finished"


def test_practitioner_role_and_practitioner_names_resolved_in_bundle():
    e = {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "in-progress",
        "subject": {"reference": "Patient/p1"},
        "class": {"code": "AMB"},
        "participant": [{"individual": {"reference": "PractitionerRole/r1"}}],
    }
    role = {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/d1"}}
    doc = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Welby", "given": ["Marcus"]}]}
    result = norm(bundle("collection", e, role, doc))
    assert by_type(result, "Encounter")[0]["attending_provider"] == "Welby, Marcus"
    unresolved = copy.deepcopy(e)
    unresolved["participant"][0]["individual"] = {"reference": "PractitionerRole/elsewhere"}
    assert by_type(norm(unresolved), "Encounter")[0]["attending_provider"] == "PractitionerRole/elsewhere"


def test_coverage():
    c = {
        "resourceType": "Coverage",
        "id": "cov1",
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "subscriberId": "XJ123",
        "relationship": {"coding": [{"code": "self"}]},
        "period": {"start": "2024-01-01", "end": "2024-12-31"},
        "payor": [{"reference": "Organization/acme", "display": "Acme Health"}],
        "class": [
            {"type": {"coding": [{"code": "group"}]}, "value": "G77"},
            {"type": {"coding": [{"code": "plan"}]}, "value": "PPO1", "name": "Acme PPO"},
        ],
    }
    [v] = by_type(norm(c), "Coverage")
    assert v["patient_id"] == "p1" and v["member_id"] == "XJ123" and v["group_number"] == "G77"
    assert v["plan_name"] == "Acme PPO" and v["payer_name"] == "Acme Health" and v["payer_id"] == "acme"
    assert v["subscriber_relationship"] == "self" and v["period_end"] == "2024-12-31"


def medication_request(**extra):
    r = {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2024-05-01",
        "requester": {"reference": "Practitioner/dr1", "display": "Dr. Welby"},
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "314076",
                    "display": "lisinopril 10 MG Oral Tablet",
                }
            ]
        },
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": "1 tab by mouth daily",
                "route": {"coding": [{"code": "26643006", "display": "Oral"}]},
                "timing": {"code": {"coding": [{"code": "QD"}]}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            }
        ],
        "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": {"value": 30, "unit": "tablet"}},
    }
    r.update(extra)
    return r


def test_medication_request_codeable_concept():
    [v] = by_type(norm(medication_request()), "MedicationOrder")
    assert v["medication"]["code"] == "314076" and v["dose"] == "1" and v["dose_units"] == "tablet"
    assert v["route"] == "Oral" and v["frequency"] == "QD" and v["refills"] == 3 and v["quantity"] == "30 tablet"
    assert v["prescriber"] == "Dr. Welby" and v["instructions"] == "1 tab by mouth daily"
    assert v["written_at"] == "2024-05-01" and v["order_id"] == "mr1"


def test_medication_request_contained_and_bundle_medication():
    mr = medication_request(
        medicationReference={"reference": "#m"},
        contained=[
            {
                "resourceType": "Medication",
                "id": "m",
                "code": {"coding": [{"system": "urn:rx", "code": "123", "display": "Drug"}]},
            }
        ],
    )
    del mr["medicationCodeableConcept"]
    mr["dosageInstruction"][0]["timing"] = {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}
    [v] = by_type(norm(mr), "MedicationOrder")
    assert v["medication"]["code"] == "123" and v["frequency"] == "2 per 1 d"

    mr2 = medication_request(medicationReference={"reference": "urn:uuid:med-1"})
    del mr2["medicationCodeableConcept"]
    med = {"resourceType": "Medication", "code": {"coding": [{"code": "456"}]}}
    b = bundle("collection", entries=[{"fullUrl": "urn:uuid:med-1", "resource": med}, {"resource": mr2}])
    result = norm(b)
    [v] = by_type(result, "MedicationOrder")
    assert v["medication"]["code"] == "456"
    assert any("Medication x1" in w for w in result.warnings)

    mr3 = medication_request(medicationReference={"reference": "Medication/elsewhere", "display": "Some drug"})
    del mr3["medicationCodeableConcept"]
    result = norm(mr3)
    assert result.records[0].value["medication"] == {"system": None, "code": None, "display": "Some drug"}
    assert any("not in the payload" in w for w in result.warnings)


def test_service_request_and_appointment():
    sr = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2024-05-01T08:00:00Z",
        "identifier": [{"type": {"coding": [{"code": "PLAC"}]}, "value": "ORD1001"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8", "display": "CMP"}]},
        "requester": {"display": "Dr. Welby"},
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}],
    }
    [o] = by_type(norm(sr), "Order")
    assert o["order_id"] == "sr1" and o["placer_order_number"] == "ORD1001" and o["priority"] == "urgent"
    assert o["code"]["code"] == "24323-8" and o["diagnoses"][0]["code"] == "E11.9"
    assert o["ordering_provider"] == "Dr. Welby" and o["status"] == "active"

    ap = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": "2024-05-06T09:00:00-04:00",
        "end": "2024-05-06T09:20:00-04:00",
        "appointmentType": {"coding": [{"code": "FOLLOWUP"}]},
        "reasonCode": [{"text": "BP check"}],
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr1", "display": "Dr. Welby"}, "status": "accepted"},
            {"actor": {"reference": "Location/l1", "display": "Room 3"}, "status": "accepted"},
        ],
    }
    [v] = by_type(norm(ap), "Appointment")
    assert v["patient_id"] == "p1" and v["duration_minutes"] == 20 and v["provider"] == "Dr. Welby"
    assert v["location"] == "Room 3" and v["appointment_type"] == "FOLLOWUP" and v["reason"] == "BP check"


def test_document_reference_inline_text_and_url():
    text = "Patient seen for follow-up. BP 150/80.\nPlan: recheck in 2 weeks — café"
    doc = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "date": "2024-05-01T10:00:00Z",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "title": "Progress note",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    [v] = by_type(norm(doc), "Document")
    assert v["text"] == text and v["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert v["kind"] == "Progress note" and v["title"] == "Progress note" and v["patient_id"] == "p1"
    assert v["content_type"].startswith("text/plain") and v["authored_at"] == "2024-05-01T10:00:00Z"

    doc2 = copy.deepcopy(doc)
    doc2["content"] = [{"attachment": {"contentType": "application/pdf", "url": "https://ehr/Binary/9"}}]
    [v] = by_type(norm(doc2), "Document")
    assert v["storage_uri"] == "https://ehr/Binary/9" and v["text"] is None

    doc3 = copy.deepcopy(doc)
    doc3["content"] = [{"attachment": {"contentType": "application/pdf", "data": base64.b64encode(b"%PDF").decode()}}]
    result = norm(doc3)
    assert result.records[0].value["sha256"] == hashlib.sha256(b"%PDF").hexdigest()
    assert any("not text/plain" in w for w in result.warnings)


# --------------------------------------------------------------------------- revenue cycle
def claim():
    return {
        "resourceType": "Claim",
        "id": "cl1",
        "status": "active",
        "use": "claim",
        "type": {"coding": [{"code": "professional"}]},
        "patient": {"reference": "Patient/p1"},
        "created": "2024-05-02",
        "provider": {"reference": "Organization/clinic"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurer": {"reference": "Organization/payer", "display": "Acme Health"},
        "billablePeriod": {"start": "2024-05-01"},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/cov1"}}],
        "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"code": "E11.9"}]}}],
        "item": [
            {
                "sequence": 1,
                "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
                "modifier": [{"coding": [{"code": "25"}]}],
                "servicedDate": "2024-05-01",
                "quantity": {"value": 1},
                "net": {"value": 120.0, "currency": "USD"},
            },
            {
                "sequence": 2,
                "productOrService": {"coding": [{"code": "80053"}]},
                "unitPrice": {"value": 30.0},
                "quantity": {"value": 2},
            },
        ],
    }


def test_claim():
    [v] = by_type(norm(claim()), "Claim")
    assert v["claim_id"] == "cl1" and v["patient_id"] == "p1" and v["payer_name"] == "Acme Health"
    assert v["total_charge"] == 180.0 and v["service_date"] == "2024-05-01"
    assert v["diagnoses"][0]["code"] == "E11.9"
    l1, l2 = v["lines"]
    assert l1["procedure"]["code"] == "99213" and l1["modifiers"] == ["25"] and l1["charge"] == 120.0
    assert l2["charge"] == 60.0 and l2["units"] == 2.0 and l1["control_number"] == "1"


def test_claim_response_adjudication_in_bundle():
    cr = {
        "resourceType": "ClaimResponse",
        "id": "cr1",
        "status": "active",
        "use": "claim",
        "type": {"coding": [{"code": "professional"}]},
        "patient": {"reference": "Patient/p1"},
        "created": "2024-05-20",
        "insurer": {"reference": "Organization/payer"},
        "request": {"reference": "Claim/cl1"},
        "outcome": "complete",
        "identifier": [{"value": "PCN-9"}],
        "item": [
            {
                "itemSequence": 1,
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 120.0}},
                    {"category": {"coding": [{"code": "eligible"}]}, "amount": {"value": 100.0}},
                    {"category": {"coding": [{"code": "deductible"}]}, "amount": {"value": 20.0}},
                    {"category": {"coding": [{"code": "copay"}]}, "amount": {"value": 10.0}},
                    {
                        "category": {"coding": [{"code": "benefit"}]},
                        "amount": {"value": 70.0},
                        "reason": {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/adjudication-reason", "code": "ar002"}
                            ]
                        },
                    },
                    {
                        "category": {"coding": [{"code": "noncovered"}]},
                        "amount": {"value": 5.0},
                        "reason": {
                            "coding": [{"system": "https://x12.org/codes/claim-adjustment-reason-codes", "code": "45"}]
                        },
                    },
                ],
            }
        ],
        "total": [
            {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 120.0}},
            {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 70.0}},
        ],
        "payment": {
            "type": {"coding": [{"code": "complete"}]},
            "amount": {"value": 70.0},
            "date": "2024-05-21",
            "identifier": {"value": "EFT-1"},
        },
    }
    pat = patient()
    payer = {
        "resourceType": "Organization",
        "id": "payer",
        "name": "Acme Health",
        "identifier": [{"system": "urn:payer", "value": "ACME01"}],
    }
    result = norm(bundle("collection", claim(), cr, pat, payer))
    [v] = by_type(result, "ClaimAdjudication")
    assert v["claim_id"] == "cl1" and v["adjudication_id"] == "cr1" and v["outcome"] == "complete"
    assert v["payer_id"] == "ACME01" and v["payer_name"] == "Acme Health"
    assert v["patient_name"] == "Testpatient, Alex J" and v["payer_claim_control_number"] == "PCN-9"
    assert (v["total_charge"], v["paid"], v["patient_responsibility"]) == (120.0, 70.0, 30.0)
    assert (v["payment_trace"], v["payment_date"]) == ("EFT-1", "2024-05-21")
    [line] = v["lines"]
    assert line["procedure"]["code"] == "99213"  # from the Claim item with the same sequence
    assert line["charge"] == 120.0 and line["paid"] == 70.0 and line["remark_codes"] == ["ar002"]
    assert line["allowed"] == 100.0  # the "eligible" adjudication
    assert {(a["group"], a["reason"], a["amount"]) for a in line["adjustments"]} == {
        ("PR", "1", 20.0),
        ("PR", "3", 10.0),
        ("CO", "45", 5.0),
    }
    assert {r.record_type for r in result.records} == {"Claim", "ClaimAdjudication", "Patient"}


def test_eob_cancelled_is_reversal_and_claim_reference():
    eob = {
        "resourceType": "ExplanationOfBenefit",
        "id": "eob1",
        "status": "cancelled",
        "use": "claim",
        "type": {"coding": [{"code": "professional"}]},
        "patient": {"reference": "Patient/p1"},
        "created": "2024-05-20",
        "insurer": {"display": "Acme"},
        "provider": {"reference": "Practitioner/1"},
        "outcome": "complete",
        "claim": {"reference": "Claim/cl1"},
        "insurance": [{"focal": True, "coverage": {"reference": "#cov"}}],
        "contained": [
            {
                "resourceType": "Coverage",
                "id": "cov",
                "status": "active",
                "subscriberId": "M123",
                "beneficiary": {"reference": "Patient/p1"},
                "payor": [{"display": "Acme"}],
            }
        ],
        "item": [
            {
                "sequence": 1,
                "productOrService": {"coding": [{"code": "99213"}]},
                "servicedDate": "2024-05-01",
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 100}},
                    {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 80}},
                ],
            }
        ],
    }
    [v] = by_type(norm(eob), "ClaimAdjudication")
    assert v["claim_id"] == "cl1" and v["reversal"] is True and v["member_id"] == "M123"
    assert v["payer_name"] == "Acme" and v["paid"] == 80.0 and v["total_charge"] == 100.0
    assert v["service_date"] == "2024-05-01"


def test_coverage_eligibility_response():
    cer = {
        "resourceType": "CoverageEligibilityResponse",
        "id": "er1",
        "status": "active",
        "purpose": ["benefits"],
        "patient": {"reference": "Patient/p1"},
        "created": "2024-05-01",
        "request": {"reference": "CoverageEligibilityRequest/rq1"},
        "outcome": "complete",
        "insurer": {"reference": "Organization/payer", "display": "Acme Health"},
        "identifier": [{"value": "TRN-5"}],
        "insurance": [
            {
                "coverage": {"reference": "Coverage/cov1"},
                "inforce": True,
                "item": [
                    {
                        "category": {"coding": [{"code": "30"}]},
                        "network": {"coding": [{"code": "in"}]},
                        "term": {"coding": [{"code": "annual"}]},
                        "benefit": [
                            {"type": {"coding": [{"code": "copay"}]}, "allowedMoney": {"value": 25}},
                            {"type": {"coding": [{"code": "copay-percent"}]}, "allowedUnsignedInt": 20},
                        ],
                    }
                ],
            }
        ],
        "error": [],
    }
    [v] = by_type(norm(cer), "EligibilityResponse")
    assert v["response_id"] == "er1" and v["active"] is True and v["trace_number"] == "TRN-5"
    assert v["patient_id"] == "p1"
    assert v["payer_name"] == "Acme Health"
    codes = [(b["info_code"], b["amount"], b["percent"], b["in_network"]) for b in v["benefits"]]
    assert codes == [("1", None, None, None), ("B", 25.0, None, "Y"), ("A", None, 20.0, "Y")]
    assert v["benefits"][1]["service_types"] == ["30"] and v["benefits"][1]["time_period"] == "annual"


# --------------------------------------------------------------------------- Bundles
def test_transaction_resolves_urn_uuid_references():
    b = bundle(
        "transaction",
        entries=[
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {k: v for k, v in patient().items() if k != "id"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": {
                    k: v
                    for k, v in observation(subject="urn:uuid:11111111-1111-1111-1111-111111111111").items()
                    if k != "id"
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "DELETE", "url": "Observation/gone"}},
        ],
    )
    result = norm(b)
    [p] = by_type(result, "Patient")
    [o] = by_type(result, "Observation")
    assert p["patient_id"] == "11111111-1111-1111-1111-111111111111" == o["patient_id"]
    assert o["observation_id"] == "22222222-2222-2222-2222-222222222222"
    assert p["event"] == "create"
    assert result.message_type == "Bundle/transaction"
    assert any("DELETE" in w for w in result.warnings)


def test_relative_reference_resolves_against_entry_base():
    pat = patient("pz")
    del pat["identifier"]
    b = bundle(
        "collection",
        entries=[
            {"fullUrl": "https://ehr.example/fhir/Patient/pz", "resource": pat},
            {
                "fullUrl": "https://ehr.example/fhir/ClaimResponse/r1",
                "resource": {
                    "resourceType": "ClaimResponse",
                    "id": "r1",
                    "status": "active",
                    "use": "claim",
                    "type": {"coding": [{"code": "professional"}]},
                    "patient": {"reference": "Patient/pz"},
                    "created": "2024-05-01",
                    "insurer": {"display": "Acme"},
                    "outcome": "complete",
                    "request": {"identifier": {"value": "CLM-77"}},
                },
            },
        ],
    )
    [v] = by_type(norm(b), "ClaimAdjudication")
    assert v["patient_id"] == "pz" and v["patient_name"] == "Testpatient, Alex J" and v["claim_id"] == "CLM-77"


def test_conditional_reference_matches_bundle_patient():
    b = bundle(
        "transaction",
        entries=[
            {"fullUrl": "urn:uuid:aaaa", "resource": patient("pq"), "request": {"method": "PUT", "url": "Patient/pq"}},
            {
                "fullUrl": "urn:uuid:bbbb",
                "resource": observation(subject="Patient?identifier=urn:mrn|MRN77"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    )
    result = norm(b)
    assert by_type(result, "Observation")[0]["patient_id"] == "pq"
    assert by_type(result, "Patient")[0]["event"] == "update"


def test_transaction_with_invalid_entry_rejected_whole():
    bad = observation("bad")
    del bad["code"]
    err = rejected(bundle("transaction", patient(), observation(), bad))
    assert err.reason_code == "invalid_resource" and "entry[2]" in err.reason and "transaction" in err.reason


@pytest.mark.parametrize("btype", ["collection", "batch", "searchset"])
def test_lenient_bundle_keeps_valid_entries(btype):
    bad = observation("bad")
    del bad["code"]
    result = norm(bundle(btype, patient(), bad, observation()))
    assert [r.record_type for r in result.records] == ["Patient", "Observation"]
    assert any("entry[1]" in w and "invalid_resource" in w for w in result.warnings)


def test_lenient_bundle_with_only_invalid_entries_rejected():
    bad = observation("bad")
    del bad["code"]
    assert rejected(bundle("collection", bad)).reason_code == "invalid_resource"


def test_unmappable_entry_is_warning_in_any_bundle():
    result = norm(bundle("transaction", patient(), observation(subject="Group/g1")))
    assert [r.record_type for r in result.records] == ["Patient"]
    assert any("missing_patient" in w for w in result.warnings)


def test_only_unsupported_types_gives_zero_records():
    result = norm(
        bundle("collection", {"resourceType": "Practitioner", "id": "d"}, {"resourceType": "Organization", "id": "o"})
    )
    assert result.records == [] and any("Organization x1" in w and "Practitioner x1" in w for w in result.warnings)


def test_searchset_outcome_and_empty_bundles():
    oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}
    b = bundle(
        "searchset",
        entries=[{"resource": patient(), "search": {"mode": "match"}}, {"resource": oo, "search": {"mode": "outcome"}}],
        total=1,
    )
    assert [r.record_type for r in norm(b).records] == ["Patient"]
    assert norm(bundle("searchset", entries=[], total=0)).records == []
    assert rejected(bundle("collection", entries=[])).reason_code == "empty_bundle"
    assert rejected(bundle("transaction")).reason_code == "empty_bundle"


def test_bundle_envelope_errors():
    assert rejected({"resourceType": "Bundle", "entry": []}).reason_code == "invalid_bundle"
    assert rejected({"resourceType": "Bundle", "type": "collection", "entry": "x"}).reason_code == "invalid_bundle"
    assert rejected({"resourceType": "Bundle", "type": "nonsense", "entry": [{}]}).reason_code == "invalid_code"
    err = rejected(bundle("collection", entries=[{"resource": {"id": "x"}}]))
    assert err.reason_code == "invalid_resource" and "missing_resource_type" in err.reason


# --------------------------------------------------------------------------- subscription notifications
def backport_status(ntype="event-notification", events=1):
    return {
        "resourceType": "Parameters",
        "id": "st1",
        "meta": {
            "profile": [
                "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
            ]
        },
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
            {"name": "topic", "valueCanonical": "http://example.org/topics/encounter-start"},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": ntype},
            {"name": "events-since-subscription-start", "valueString": str(events)},
        ],
    }


def test_backport_full_resource_notification():
    b = bundle(
        "history",
        id="n1",
        timestamp="2024-05-01T10:00:00Z",
        entries=[
            {
                "fullUrl": "urn:uuid:status",
                "resource": backport_status(),
                "request": {"method": "GET", "url": "Subscription/s1/$status"},
                "response": {"status": "200"},
            },
            {
                "fullUrl": "https://ehr.example/fhir/Patient/p1",
                "resource": patient(),
                "request": {"method": "PUT", "url": "Patient/p1"},
                "response": {"status": "200"},
            },
        ],
    )
    result = norm(b)
    assert result.message_type == "Bundle/history"
    [p] = by_type(result, "Patient")
    assert p["event"] == "update" and p["source"]["sent_at"] == "2024-05-01T10:00:00Z"
    assert len(result.records) == 1  # the status Parameters is not a record and not "unsupported"
    assert not any("Parameters" in w for w in result.warnings)


def test_backport_id_only_and_empty_notifications():
    id_only = bundle(
        "history",
        entries=[
            {"fullUrl": "urn:uuid:status", "resource": backport_status()},
            {
                "fullUrl": "https://ehr.example/fhir/Encounter/e9",
                "request": {"method": "PUT", "url": "Encounter/e9"},
                "response": {"status": "200"},
            },
        ],
    )
    result = norm(id_only)
    assert result.records == [] and any("id-only" in w and "Encounter/e9" in w for w in result.warnings)
    for ntype in ("event-notification", "heartbeat", "handshake"):
        empty = bundle("history", entries=[{"fullUrl": "urn:uuid:status", "resource": backport_status(ntype, 0)}])
        result = norm(empty)
        assert result.records == [] and any(ntype in w for w in result.warnings)


def test_r4b_subscription_notification_shape():
    status = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": "event-notification",
        "subscription": {"reference": "Subscription/s1"},
        "topic": "http://example.org/topics/obs",
    }
    b = bundle("subscription-notification", entries=[{"resource": status}, {"resource": observation()}])
    result = norm(b)
    assert [r.record_type for r in result.records] == ["Observation"]


# --------------------------------------------------------------------------- robustness
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_BASES = [
    patient(),
    observation(),
    bp_panel(),
    medication_request(),
    claim(),
    bundle("collection", patient(), observation()),
    bundle("transaction", patient(), bp_panel()),
]


def _mutate(base, path_choice, value):
    obj = copy.deepcopy(base)
    node = obj
    keys = []
    while isinstance(node, (dict, list)) and node:
        keys.append(node)
        if isinstance(node, dict):
            k = sorted(node)[path_choice % len(node)]
        else:
            k = path_choice % len(node)
        path_choice //= 3
        if path_choice == 0 or not isinstance(node[k], (dict, list)) or not node[k]:
            node[k] = value
            return obj
        node = node[k]
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(_BASES), path=st.integers(min_value=0, max_value=10**6), value=_json)
def test_fuzz_mutated_resources_only_result_or_rejected(base, path, value):
    raw = json.dumps(_mutate(base, path, value)).encode()
    try:
        result = normalize_fhir(raw, PRACTICE, 0)
    except Rejected as e:
        assert e.reason_code != "mapping_error", e.reason
        return
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode()))
def test_fuzz_random_bytes_only_result_or_rejected(raw):
    try:
        normalize_fhir(raw, PRACTICE, 0)
    except Rejected:
        pass


# --------------------------------------------------------------------------- every reference, every target
_TARGETS = {
    "Patient": patient("t"),
    "Practitioner": {
        "resourceType": "Practitioner",
        "id": "t",
        "name": [{"family": "Doc"}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    },
    "PractitionerRole": {
        "resourceType": "PractitionerRole",
        "id": "t",
        "practitioner": {"reference": "Practitioner/t"},
    },
    "Organization": {"resourceType": "Organization", "id": "t", "name": "Org", "identifier": [{"value": "O1"}]},
    "Location": {"resourceType": "Location", "id": "t", "name": "Room"},
    "Group": {"resourceType": "Group", "id": "t", "type": "person", "actual": True},
    "Medication": {"resourceType": "Medication", "id": "t", "code": {"coding": [{"code": "m"}]}},
    "Coverage": {
        "resourceType": "Coverage",
        "id": "t",
        "status": "active",
        "beneficiary": {"reference": "Patient/t"},
        "payor": [{"reference": "Organization/t"}],
        "subscriberId": "S1",
    },
    "Claim": claim() | {"id": "t"},
    "Condition": {"resourceType": "Condition", "id": "t", "subject": {"reference": "Patient/t"}, "code": {"text": "x"}},
}


def _reference_paths(node, path=()):
    if isinstance(node, dict):
        if "reference" in node or ("identifier" in node and "display" in node):
            yield path
        for k, v in node.items():
            if k != "contained":
                yield from _reference_paths(v, path + (k,))
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield from _reference_paths(v, path + (n,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


_REF_BASES = [
    patient(),
    observation(),
    bp_panel(),
    medication_request(),
    claim(),
    {
        "resourceType": "Encounter",
        "id": "e",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": "Practitioner/x"}}],
        "location": [{"location": {"reference": "Location/x"}}],
        "reasonReference": [{"reference": "Condition/x"}],
    },
    {
        "resourceType": "Appointment",
        "id": "a",
        "status": "booked",
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/x"}, "status": "accepted"},
        ],
    },
    {
        "resourceType": "ExplanationOfBenefit",
        "id": "eob",
        "status": "active",
        "use": "claim",
        "type": {"coding": [{"code": "professional"}]},
        "patient": {"reference": "Patient/p1"},
        "created": "2024-05-01",
        "insurer": {"reference": "Organization/x"},
        "provider": {"reference": "Practitioner/x"},
        "outcome": "complete",
        "claim": {"reference": "Claim/x"},
        "insurance": [{"focal": True, "coverage": {"reference": "Coverage/x"}}],
        "item": [{"sequence": 1, "productOrService": {"text": "x"}}],
    },
    {
        "resourceType": "CoverageEligibilityResponse",
        "id": "er",
        "status": "active",
        "purpose": ["validation"],
        "patient": {"reference": "Patient/p1"},
        "created": "2024-05-01",
        "request": {"reference": "X/x"},
        "outcome": "complete",
        "insurer": {"reference": "Organization/x"},
        "insurance": [{"coverage": {"reference": "Coverage/x"}, "inforce": False}],
    },
    {
        "resourceType": "Coverage",
        "id": "c",
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"reference": "Organization/x"}],
    },
    {
        "resourceType": "DocumentReference",
        "id": "d",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"url": "http://x"}}],
    },
]
_REF_VALUES = [{"reference": f"{t}/t"} for t in _TARGETS] + [
    {"reference": "#c"},
    {"reference": "#missing"},
    {"reference": "#"},
    {"reference": "urn:uuid:nowhere"},
    {"reference": "https://elsewhere.example/fhir/Patient/z/_history/2"},
    {"reference": "Patient?identifier=a|b"},
    {"identifier": {"system": "urn:x", "value": "v"}},
    {"display": "only a display"},
    {"reference": "opaque:thing"},
]


@pytest.mark.parametrize("base", _REF_BASES, ids=lambda r: r["resourceType"])
def test_every_reference_to_every_target(base):
    contained = {"resourceType": "Practitioner", "id": "c", "name": [{"family": "Contained"}]}
    for path in list(_reference_paths(base)):
        for value in _REF_VALUES:
            res = copy.deepcopy(base)
            res["contained"] = [contained]
            _set(res, path, copy.deepcopy(value))
            b = bundle("collection", res, *_TARGETS.values())
            try:
                result = norm(b)
            except Rejected as e:
                assert e.reason_code != "mapping_error", (path, value, e.reason)
            else:
                assert not any("mapping_error" in w for w in result.warnings), (path, value, result.warnings)
            try:
                norm(res)
            except Rejected as e:
                assert e.reason_code != "mapping_error", (path, value, e.reason)
