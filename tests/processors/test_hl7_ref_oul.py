"""HL7 REF^I12 (referral) and OUL^R22 (specimen-oriented results): accepted, not rejected.

REF^I12 becomes the same referral work item a faxed referral becomes; OUL^R22 gives the
same Observations an ORU^R01 with the same OBX segments gives."""

from __future__ import annotations

from practiceflow.processors.dispatch import handoffs_for, normalize_raw
from practiceflow.processors.hl7.normalize import normalize_hl7
from tests.fixtures import oru_r01

OUL = (
    "\r".join(
        [
            "MSH|^~\\&|LAB|ACME LAB|EHR|DEMO CLINIC|20261127083000||OUL^R22^OUL_R22|OUL0001|P|2.5.1",
            "PID|1||MRN1001^^^DEMO^MR||Testpatient^Alex^J||19800101|F|||12 Main St^^Springfield^IL^62701||555-0100",
            "SPM|1|SP1001||SER^Serum^HL70487|||||||||||||20261127070000",
            "OBR|1|ORD1001|LAB5001|80048^Basic metabolic panel^CPT|||20261127070000|||||||||1234^Welby^Marcus||||||20261127082500|||F",
            "ORC|RE|ORD1001|LAB5001",
            "OBX|1|NM|2345-7^Glucose^LN||182|mg/dL|70-99|H|||F|||20261127070000",
            "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F|||20261127070000",
            "OBX|3|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F|||20261127070000",
            "NTE|1||Fasting specimen",
        ]
    ).encode()
    + b"\r"
)

REF = (
    "\r".join(
        [
            "MSH|^~\\&|REFSYS|SUMMIT PC|EHR|DEMO CLINIC|20261127090000||REF^I12^REF_I12|REF0001|P|2.5.1",
            "RF1|A^Accepted^HL70283|U^Urgent^HL70280|CARD^Cardiology^HL70281||O^Outpatient^HL70282|R-778899||20261127||"
            "R07.9^Chest pain, unspecified^I10",
            "PRD|RP^Referring Provider^HL70286|Carter^Paul^^^Dr.|12 Oak St^^Springfield^IL",
            "PRD|RT^Referred to Provider^HL70286|Patel^Ana^^^Dr.",
            "PID|1||MRN2002^^^DEMO^MR||Rivera^James||19581112|M",
            "DG1|1||R07.9^Chest pain, unspecified^I10||20261120|W",
            "IN1|1|PPO^Preferred^L|BH001|Blue Harbor Health Plan|||||GRP77|||||||Rivera^James|SEL|19581112|||||||||||||||||||W123456789",
        ]
    ).encode()
    + b"\r"
)


def _obs(result) -> list[dict]:
    out = []
    for r in result.records:
        if r.record_type == "Observation":
            v = {k: val for k, val in r.value.items() if k != "source"}
            out.append(v)
    return sorted(out, key=lambda v: v["observation_id"])


def test_oul_r22_gives_the_same_observations_as_oru():
    oul = normalize_hl7(OUL, "demo", 0)
    oru = normalize_hl7(oru_r01(), "demo", 0)
    assert oul.message_type == "OUL^R22"
    assert _obs(oul) == _obs(oru) and len(_obs(oul)) == 3
    assert "unmapped_segment:SPM" in oul.warnings  # the specimen is not mapped yet, and says so


def test_ref_i12_becomes_a_referral_order_and_the_same_work_item_as_a_faxed_referral():
    raw = {"feed": "hl7v2", "practice_id": "demo", "payload": REF, "received_at": 0, "message_id": "m"}
    result = normalize_raw(raw)
    types = sorted({r.record_type for r in result.records})
    assert {"Patient", "Order", "Condition", "Coverage"} <= set(types)
    (order,) = [r.value for r in result.records if r.record_type == "Order"]
    assert order["order_id"] == "R-778899" and order["patient_id"] == "MRN2002"
    assert order["code"]["code"] == "CARD" and order["priority"] == "U"
    assert order["ordering_provider"] and "Carter" in order["ordering_provider"]
    assert order["diagnoses"][0]["code"] == "R07.9"
    (item,) = [i.value for i in handoffs_for(result, "demo", 1_764_000_000_000)]
    assert (item["workflow"], item["kind"], item["queue"]) == ("referral", "referral.incoming", "referrals")
    assert item["priority"] == "high" and item["patient_id"] == "MRN2002"
    assert {o["option"] for o in item["options"]} == {"assign", "acknowledge"}

    # a faxed referral's item: same workflow, kind, queue and options
    from practiceflow.processors.workflows.fax.handoffs import item_for

    faxed = item_for(
        {
            "practice_id": "demo",
            "classification_id": "c-0",
            "queue": "referrals",
            "doc_class": "referral",
            "kind": "referral",
            "confidence": 0.97,
            "abstained": False,
            "pages": [2, 3],
            "guesses": [{"label": "referral", "probability": 0.97}],
            "patient_match": "unverified",
            "patient_id": "MRN2002",
            "routing_reason": "by_class",
            "extracted": [],
            "source": {"feed": "fax", "message_id": "f"},
            "pages_received": 3,
        },
        1_764_000_000_000,
    )
    same = ("workflow", "kind", "queue", "contract_version")
    assert {k: faxed[k] for k in same} == {k: item[k] for k in same}
    assert [o["option"] for o in faxed["options"]] == [o["option"] for o in item["options"]]


def test_ref_without_pid_is_still_rejected_with_a_reason():
    bad = REF.replace(b"PID|1||MRN2002^^^DEMO^MR||Rivera^James||19581112|M\r", b"")
    try:
        normalize_hl7(bad, "demo", 0)
    except Exception as exc:  # Rejected
        assert getattr(exc, "reason_code", "") == "missing_pid_segment"
    else:
        raise AssertionError("a REF without PID must be rejected")
