"""Results review: one rule for HL7 and FHIR, critical flags, corrected results supersede."""

from __future__ import annotations

import json

from practiceflow.processors.dispatch import handoffs_for
from practiceflow.processors.fhir.normalize import normalize_fhir
from practiceflow.processors.hl7.normalize import content_hash, message_id_for, normalize_hl7
from tests.fixtures import oru_r01

INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def fhir_obs(code: str | None, status: str = "final", oid: str = "k1", value: float = 6.9) -> bytes:
    r = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-27T07:00:00Z",
        "valueQuantity": {"value": value, "unit": "mmol/L"},
    }
    if code:
        r["interpretation"] = [{"coding": [{"system": INTERP, "code": code}]}]
    return json.dumps(r).encode()


def items(result):
    return [i.value for i in handoffs_for(result, "clinic-a", 1_000)]


def test_critical_fhir_observation_creates_an_urgent_review_item():
    for code in ("HH", "LL", "AA"):
        [item] = items(normalize_fhir(fhir_obs(code), "clinic-a", 0))
        assert item["workflow"] == "results_review" and item["queue"] == "clinician"
        assert item["priority"] == "urgent", code
        assert item["patient_id"] and item["corrected"] is False


def test_flagged_fhir_observation_is_high_and_an_unflagged_one_needs_no_review():
    [item] = items(normalize_fhir(fhir_obs("H"), "clinic-a", 0))
    assert item["priority"] == "high"
    assert items(normalize_fhir(fhir_obs(None), "clinic-a", 0)) == []  # e.g. vitals the practice took
    assert items(normalize_fhir(fhir_obs("N"), "clinic-a", 0)) == []


def test_hl7_oru_still_gets_a_routine_item_without_flags():
    [item] = items(normalize_hl7(oru_r01(flag="N"), "clinic-a", 0))
    assert item["priority"] == "routine" and item["corrected"] is False


def test_corrected_hl7_result_supersedes_the_first_item():
    first = normalize_hl7(oru_r01(control_id="R1", glucose="182"), "clinic-a", 0)
    corrected_msg = oru_r01(control_id="R2", glucose="128", flag="N").replace(b"|N|||F|", b"|N|||C|")
    corrected_msg = corrected_msg.replace(b"|H|||F|", b"|H|||C|")
    second = normalize_hl7(corrected_msg, "clinic-a", 0)
    assert first.message_id != second.message_id
    [a] = handoffs_for(first, "clinic-a", 1_000)
    [b] = handoffs_for(second, "clinic-a", 2_000)
    assert a.key == b.key and a.value["item_id"] == b.value["item_id"]  # compacted topic / RMT keep one
    assert a.value["corrected"] is False and b.value["corrected"] is True
    assert b.value["title"].startswith("Corrected results")
    assert b.value["priority"] in ("high", "urgent")


def test_corrected_fhir_observation_supersedes_the_first_item():
    [a] = handoffs_for(normalize_fhir(fhir_obs("HH"), "clinic-a", 0), "clinic-a", 1_000)
    for status in ("corrected", "amended"):
        [b] = handoffs_for(normalize_fhir(fhir_obs("H", status=status, value=6.1), "clinic-a", 0), "clinic-a", 2_000)
        assert a.key == b.key and b.value["corrected"] is True


def test_different_results_keep_different_items():
    [a] = handoffs_for(normalize_fhir(fhir_obs("HH", oid="k1"), "clinic-a", 0), "clinic-a", 1)
    [b] = handoffs_for(normalize_fhir(fhir_obs("HH", oid="k2"), "clinic-a", 0), "clinic-a", 1)
    assert a.key != b.key
    x = normalize_hl7(oru_r01(control_id="A"), "clinic-a", 0)
    y = normalize_hl7(oru_r01(control_id="B").replace(b"ORD1001", b"ORD2002"), "clinic-a", 0)
    assert handoffs_for(x, "clinic-a", 1)[0].key != handoffs_for(y, "clinic-a", 1)[0].key


# --------------------------------------------------------------------------- HL7 content hash
def test_reused_control_id_with_new_content_gets_a_new_message_id():
    a = normalize_hl7(oru_r01(control_id="SAME", glucose="182"), "clinic-a", 0)
    b = normalize_hl7(oru_r01(control_id="SAME", glucose="95", flag="N"), "clinic-a", 0)
    assert a.message_id != b.message_id
    assert a.control_key == b.control_key == message_id_for("LAB", "ACME LAB", "SAME")


def test_identical_resend_keeps_its_message_id_even_with_a_new_msh7_or_line_endings():
    msg = oru_r01(control_id="SAME")
    again = msg.replace(b"20261127083000", b"20261127093000", 1).replace(b"\r", b"\r\n")
    a = normalize_hl7(msg, "clinic-a", 0)
    b = normalize_hl7(again, "clinic-a", 0)
    assert a.message_id == b.message_id
    assert content_hash(msg) == content_hash(again)
