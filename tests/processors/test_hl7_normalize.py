"""normalize_hl7 on hand-written messages: one test group per supported message type,
plus header checks, dates, strict mode, keys and the Avro contract."""

from __future__ import annotations

import pytest
from fastavro.validation import validate

from practiceflow.processors.base import Normalized, NormalizeResult, Rejected, entity_key
from practiceflow.processors.hl7.normalize import SUPPORTED, content_hash, message_id_for, normalize_hl7
from practiceflow.schemas.avro_gen import load_parsed

PRACTICE = "prac-7"
RECEIVED = 1_709_650_000_000


def hl7(*segments: str, sep: str = "\r") -> bytes:
    return (sep.join(segments) + sep).encode("utf-8")


def seg(name: str, fields: dict[int, str]) -> str:
    """Build a segment from {field number: raw value} (no miscounted pipes)."""
    out = [name] + [""] * max(fields)
    for n, v in fields.items():
        out[n] = v
    return "|".join(out)


def msh(mtype: str, control: str = "CTRL1", version: str = "2.5.1", extra: str = "") -> str:
    return f"MSH|^~\\&|LABAPP|LABFAC|EHR|CLINIC|20240305143000-0500||{mtype}|{control}|P|{version}{extra}"


PID = (
    "PID|1||MRN123^^^CLINIC^MR~999-88-7777^^^SSA^SS||DOE^JANE^Q||19800102|F|||"
    "1 MAIN ST^APT 2^SPRINGFIELD^IL^62704^USA^H||(217)555-0100^PRN^PH~^NET^Internet^jane@example.org|"
    "(217)555-0199^WPN^PH"
)


def run(raw: bytes, **kw) -> NormalizeResult:
    result = normalize_hl7(raw, PRACTICE, RECEIVED, **kw)
    assert isinstance(result, NormalizeResult)
    for rec in result.records:
        assert isinstance(rec, Normalized)
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.value["practice_id"] == PRACTICE
        src = rec.value["source"]
        assert src["feed"] == "hl7v2" and src["message_id"] == result.message_id
        assert src["message_type"] == result.message_type
    return result


def by_type(result: NormalizeResult, record_type: str) -> list[dict]:
    return [r.value for r in result.records if r.record_type == record_type]


def rejected(raw: bytes, **kw) -> Rejected:
    with pytest.raises(Rejected) as e:
        normalize_hl7(raw, PRACTICE, RECEIVED, **kw)
    return e.value


# --------------------------------------------------------------------------- ADT
ADT_A01 = hl7(
    msh("ADT^A01^ADT_A01"),
    "EVN|A01|20240305142900",
    PID,
    "PV1|1|I|ICU^201^A^MAINHOSP||||1234^WELBY^MARCUS^^^DR|||MED||||7|||1234^WELBY^MARCUS|IP|VN777|||||||||||||||||||||||||20240305140000",
    "PV2|||R07.9^Chest pain^I10",
    "IN1|1|PPO1^Gold PPO|BCBS01^^^^NIIP|Blue Cross|PO BOX 1^^CHICAGO^IL^60601|||GRP55||||20240101|20241231|||DOE^JANE|SEL^Self|"
    "19800102||||||||||||||||||MEM-42",
)


def test_adt_a01_patient_encounter_coverage():
    r = run(ADT_A01)
    assert r.message_type == "ADT^A01"
    assert r.message_id == message_id_for("LABAPP", "LABFAC", "CTRL1", content_hash(ADT_A01))
    assert r.control_key == message_id_for("LABAPP", "LABFAC", "CTRL1")
    assert sorted(x.record_type for x in r.records) == ["Coverage", "Encounter", "Patient"]
    (p,) = by_type(r, "Patient")
    assert p["patient_id"] == "MRN123"
    assert p["identifiers"] == [
        {"value": "MRN123", "system": "CLINIC", "type": "MR"},
        {"value": "***-**-7777", "system": "SSA", "type": "SS"},
    ]
    assert p["family_name"] == "DOE" and p["given_names"] == ["JANE", "Q"]
    assert p["birth_date"] == "1980-01-02"
    assert p["sex"] == "F"
    assert p["address"] == {
        "line": ["1 MAIN ST", "APT 2"],
        "city": "SPRINGFIELD",
        "state": "IL",
        "postal_code": "62704",
        "country": "USA",
    }
    assert p["phones"] == ["(217)555-0100", "(217)555-0199"]  # the e-mail repetition is not a phone
    assert p["event"] == "A01" and p["deceased"] is False and p["merged_from"] == []
    assert p["source"]["sent_at"] == "2024-03-05T14:30:00-05:00"
    (e,) = by_type(r, "Encounter")
    assert e["encounter_id"] == "VN777"
    assert e["status"] == "in-progress" and e["encounter_class"] == "inpatient"
    assert e["location"] == "ICU/201/A @ MAINHOSP"
    assert e["attending_provider"] == "WELBY, MARCUS (1234)"
    assert e["admit_at"] == "2024-03-05T14:00:00"
    assert e["reason"] == "Chest pain"
    (c,) = by_type(r, "Coverage")
    # the member id is a value, never part of the key (PHI)
    assert c["member_id"] == "MEM-42"
    assert c["coverage_id"].startswith("BCBS01:m") and "MEM-42" not in c["coverage_id"]
    assert all("MEM-42" not in rec.key for rec in r.records)
    assert (c["payer_id"], c["payer_name"], c["plan_name"]) == ("BCBS01", "Blue Cross", "Gold PPO")
    assert (c["member_id"], c["group_number"], c["subscriber_relationship"]) == ("MEM-42", "GRP55", "Self")
    assert (c["period_start"], c["period_end"]) == ("2024-01-01", "2024-12-31")


def test_keys_are_entity_keys():
    r = run(ADT_A01)
    for x in r.records:  # built with tuple.__new__ on the hot path: still a plain, immutable Normalized
        assert type(x) is Normalized and len(x) == 3 and x._fields == ("record_type", "key", "value")
        with pytest.raises(AttributeError):
            x.key = "other"  # type: ignore[misc]
    keys = {x.record_type: x.key for x in r.records}
    assert keys["Patient"] == entity_key(PRACTICE, "MRN123")
    assert keys["Encounter"] == entity_key(PRACTICE, "MRN123", "VN777")
    assert keys["Coverage"].startswith(entity_key(PRACTICE, "MRN123", "BCBS01:m")) and "MEM-42" not in keys["Coverage"]


@pytest.mark.parametrize(
    "event, status", [("A03", "finished"), ("A04", "arrived"), ("A08", None), ("A28", None), ("A31", None)]
)
def test_adt_events(event, status):
    raw = ADT_A01.replace(b"ADT^A01^ADT_A01", f"ADT^{event}".encode())
    r = run(raw)
    (p,) = by_type(r, "Patient")
    assert p["event"] == event
    (e,) = by_type(r, "Encounter")
    assert e["status"] == status and e["event"] == event


def test_adt_a40_merge_sets_merged_from():
    r = run(
        hl7(
            msh("ADT^A40^ADT_A39", version="2.8"),
            "EVN|A40|20240305",
            "PID|1||NEW1^^^CLINIC^MR||DOE^JANE",
            "MRG|OLD9^^^CLINIC^MR~OLD8^^^CLINIC^MR",
            "PID|1||NEW2^^^CLINIC^MR||ROE^RICHARD",
            "MRG|OLD7^^^CLINIC^MR",
        )
    )
    pats = by_type(r, "Patient")
    assert [(p["patient_id"], p["merged_from"]) for p in pats] == [("NEW1", ["OLD9", "OLD8"]), ("NEW2", ["OLD7"])]


def test_adt_without_visit_number_uses_admit_time_or_skips():
    raw = hl7(msh("ADT^A04"), PID, seg("PV1", {1: "1", 2: "O", 3: "CLINIC", 44: "20240305090000"}))
    (e,) = by_type(run(raw), "Encounter")
    assert e["encounter_id"].startswith("admit-")
    assert run(raw).records[1].value["encounter_id"] == e["encounter_id"]  # stable
    r = run(hl7(msh("ADT^A04"), PID, "PV1|1|O|CLINIC"))
    assert by_type(r, "Encounter") == []
    assert any("pv1_without_visit_number" in w for w in r.warnings)


def test_dft_p03_keeps_patient_and_encounter_with_a_warning():
    r = run(
        hl7(
            msh("DFT^P03"),
            "EVN|P03|20240305",
            PID,
            "PV1|1|O|||||||||||||||||V1",
            "FT1|1|||20240305||CG|99213^Office visit^CPT|||1|75.00",
        )
    )
    assert sorted(x.record_type for x in r.records) == ["Encounter", "Patient"]
    assert any(w.startswith("dft_financial_transactions_not_mapped") for w in r.warnings)


# --------------------------------------------------------------------------- ORU
ORU = hl7(
    msh("ORU^R01^ORU_R01"),
    PID,
    "ORC|RE|ORD1|FILL1||CM||^^^^^R|||||1234^WELBY^MARCUS",
    "OBR|1|ORD1|FILL1|80048^Basic metabolic panel^CPT|||20240305080000|||||||||1234^WELBY^MARCUS||||||20240305140000|||F",
    "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F|||20240305120000",
    "NTE|1|L|Fasting specimen",
    "NTE|2|L|Repeat \\.br\\advised",
    "OBX|2|SN|1554-5^Glucose 2h^LN||>^180|mg/dL|<140|H~A|||F",
    "OBX|3|SN|5000-0^Ratio^LN||^1^:^128||||||F",
    "OBX|4|CE|600-7^Culture^LN||260373001^Detected^SCT||||A|||F",
    "OBX|5|TX|11526-1^Narrative^LN||Line one~Line two \\T\\ more||||||F",
    "OBX|6|ED|PDF^Report^L||LAB^application^pdf^Base64^JVBERi0xLjQKJcfs||||||F",
    "OBX|7|DT|29769-7^Collected^LN||20240304||||||F",
    "OBX|8|NM|2951-2^Sodium^LN||NOVALUE|mmol/L|||||F",
    "OBX|9|ST|||free text without code||||||P",
    "SPM|1|SP1||BLD",
)


def test_oru_observations_orders_and_patient():
    r = run(ORU)
    assert r.message_type == "ORU^R01"
    assert [x.record_type for x in r.records][:2] == ["Patient", "Order"]
    obs = by_type(r, "Observation")
    assert len(obs) == 9
    (order,) = by_type(r, "Order")
    assert order["order_id"] == "ORD1" and order["filler_order_number"] == "FILL1"
    assert order["control"] == "RE" and order["status"] == "F" and order["priority"] == "R"
    assert order["code"] == {"system": "CPT", "code": "80048", "display": "Basic metabolic panel"}
    assert order["ordering_provider"] == "WELBY, MARCUS (1234)"

    glu = obs[0]
    assert glu["observation_id"] == "ORD1:1:2345-7"
    assert glu["order_id"] == "ORD1"
    assert glu["code"] == {"system": "LN", "code": "2345-7", "display": "Glucose"}
    assert (glu["value_type"], glu["value"], glu["value_numeric"]) == ("NM", "105", 105.0)
    assert (glu["units"], glu["reference_range"], glu["abnormal_flags"]) == ("mg/dL", "70-99", ["H"])
    assert glu["status"] == "F" and glu["effective_at"] == "2024-03-05T12:00:00"
    assert glu["notes"] == ["Fasting specimen", "Repeat \nadvised"]

    sn = obs[1]
    assert (sn["value"], sn["value_numeric"], sn["abnormal_flags"]) == (">180", None, ["H", "A"])
    assert sn["effective_at"] == "2024-03-05T08:00:00"  # falls back to OBR-7
    assert (obs[2]["value"], obs[2]["value_numeric"]) == ("1:128", None)
    assert obs[3]["value"] == "Detected (260373001)"
    assert obs[4]["value"] == "Line one\nLine two & more"
    ed = obs[5]["value"]
    assert ed.startswith("[ED application/pdf Base64") and "JVBERi0" not in ed and len(ed) < 80
    assert obs[6]["value"] == "2024-03-04"
    assert (obs[7]["value"], obs[7]["value_numeric"]) == ("NOVALUE", None)
    assert any("non_numeric_nm_value" in w for w in r.warnings)
    assert obs[8]["code"] == {"system": None, "code": None, "display": None}
    assert obs[8]["observation_id"] == "ORD1:9:-"
    assert r.records[2].key == entity_key(PRACTICE, "MRN123", "ORD1:1:2345-7")


def test_observation_ids_are_stable_and_unique():
    a = run(ORU)
    b = run(ORU)
    assert [x.key for x in a.records] == [x.key for x in b.records]
    assert a.records == b.records  # pure: same input, same records
    dup = hl7(msh("ORU^R01"), PID, "OBR|1|O1", "OBX|1|TX|||a", "OBX|1|TX|||b", "OBX|1|TX|||c")
    ids = [o["observation_id"] for o in by_type(run(dup), "Observation")]
    assert ids == ["O1:1:-", "O1:1:-#2", "O1:1:-#3"]


def test_oru_several_obr_under_one_filler_number_get_distinct_orders():
    r = run(
        hl7(
            msh("ORU^R01"),
            PID,
            "ORC|RE||F9",
            "OBR|1||F9|A^Test A^LN",
            "OBX|1|NM|A^Test A^LN||1",
            "OBR|2||F9|B^Test B^LN",
            "OBX|1|NM|B^Test B^LN||2",
        )
    )
    orders = by_type(r, "Order")
    assert [o["order_id"] for o in orders] == ["F9", "F9.B"]
    assert [o["order_id"] for o in by_type(r, "Observation")] == ["F9", "F9.B"]


def test_oru_without_patient_identifier_is_rejected():
    assert rejected(hl7(msh("ORU^R01"), "PID|1", "OBR|1|X", "OBX|1|NM|a||1")).reason_code == "missing_patient_id"
    assert rejected(hl7(msh("ORU^R01"), "OBR|1|X", "OBX|1|NM|a||1")).reason_code == "missing_pid_segment"


def test_patient_id_falls_back_to_pid2_and_pid4():
    r = run(hl7(msh("ORU^R01"), "PID|1|| |ALT55^^^^DNI|DOE^J", "OBR|1|X", "OBX|1|NM|a||1"))
    assert by_type(r, "Patient")[0]["patient_id"] == "ALT55"
    assert "patient_id_from_PID-4" in r.warnings


# --------------------------------------------------------------------------- ORM / OML
def test_orm_o01_orders():
    r = run(
        hl7(
            msh("ORM^O01", version="2.3"),
            PID,
            seg("ORC", {1: "NW", 2: "P100", 7: "^^^20240306^^S", 9: "20240305101500", 12: "1234^WELBY^MARCUS"}),
            seg("OBR", {1: "1", 2: "P100", 4: "85025^CBC^CPT", 31: "Z00.00^Annual exam^I10"}),
            "DG1|1||E11.9^Type 2 diabetes^I10",
            "ORC|CA|P101",
        )
    )
    orders = by_type(r, "Order")
    assert [o["order_id"] for o in orders] == ["P100", "P101"]
    o = orders[0]
    assert (o["control"], o["priority"], o["ordered_at"]) == ("NW", "S", "2024-03-05T10:15:00")
    assert o["code"]["code"] == "85025"
    assert [d["code"] for d in o["diagnoses"]] == ["Z00.00", "E11.9"]
    assert orders[1]["control"] == "CA" and orders[1]["code"] is None
    assert by_type(r, "Observation") == []


def test_oml_o21_two_orders():
    r = run(
        hl7(
            msh("OML^O21^OML_O21"),
            PID,
            "ORC|NW|A1",
            "TQ1|1||||||||R",
            "OBR|1|A1||GLU^Glucose^L",
            "ORC|NW|A2",
            "OBR|1|A2||K^Potassium^L",
        )
    )
    orders = by_type(r, "Order")
    assert [o["order_id"] for o in orders] == ["A1", "A2"]
    assert orders[0]["priority"] == "R"


# --------------------------------------------------------------------------- SIU
def test_siu_appointment():
    r = run(
        hl7(
            msh("SIU^S12^SIU_S12"),
            seg(
                "SCH",
                {
                    1: "APT9",
                    2: "FIL9",
                    6: "ROUTINE^Routine visit^HL70276",
                    7: "FOLLOWUP^Follow-up^HL70277",
                    8: "CHECKUP^Checkup",
                    9: "30",
                    10: "MIN",
                    11: "^^30^20240310090000^20240310093000",
                    25: "Booked",
                },
            ),
            PID,
            "PV1|1|O|MAIN^EXAM1",
            "AIP|1||4455^NGUYEN^LINH^^^^MD|D",
            "AIL|1||MAIN^EXAM1^^CLINIC",
        )
    )
    (a,) = by_type(r, "Appointment")
    assert a["appointment_id"] == "APT9" and a["patient_id"] == "MRN123"
    assert (a["event"], a["status"], a["start"], a["duration_minutes"]) == ("S12", "Booked", "2024-03-10T09:00:00", 30)
    assert (a["appointment_type"], a["reason"]) == ("Checkup", "Follow-up")
    assert a["provider"] == "NGUYEN, LINH (4455)"
    assert a["location"] == "MAIN/EXAM1 @ CLINIC"
    assert r.records[-1].key == entity_key(PRACTICE, "MRN123", "APT9")


@pytest.mark.parametrize("event, status", [("S13", "booked"), ("S14", "booked"), ("S15", "cancelled")])
def test_siu_events_without_patient(event, status):
    r = run(hl7(msh(f"SIU^{event}"), "SCH|A1||||||||2|h|^^^202403101400"))
    (a,) = by_type(r, "Appointment")
    assert a["patient_id"] is None and a["event"] == event and a["status"] == status
    assert (a["start"], a["duration_minutes"]) == ("2024-03-10T14:00", 120)
    assert r.records[0].key == entity_key(PRACTICE, None, "A1")


# --------------------------------------------------------------------------- pharmacy
def test_rde_o11_medication_order():
    r = run(
        hl7(
            msh("RDE^O11^RDE_O11"),
            PID,
            "ORC|NW|RX55||||||^BID|20240305120000|||1234^WELBY^MARCUS",
            "RXE|^BID|197361^Amlodipine 5 MG Oral Tablet^RXNORM|5||mg^milligram^UCUM|TAB|"
            "Take with water~Do not crush|||30|TAB|3|||||||||||||||||||20240305115900",
            "RXR|PO^Oral^HL70162",
        )
    )
    (rx,) = by_type(r, "MedicationOrder")
    assert rx["order_id"] == "RX55"
    assert rx["medication"] == {"system": "RXNORM", "code": "197361", "display": "Amlodipine 5 MG Oral Tablet"}
    assert (rx["dose"], rx["dose_units"], rx["route"], rx["frequency"]) == ("5", "mg", "Oral", "BID")
    assert (rx["quantity"], rx["refills"], rx["status"]) == ("30 TAB", 3, "NW")
    assert rx["prescriber"] == "WELBY, MARCUS (1234)"
    assert rx["written_at"] == "2024-03-05T12:00:00"
    assert rx["instructions"] == "Take with water\nDo not crush"


def test_omp_o09_uses_rxo():
    r = run(
        hl7(msh("OMP^O09"), PID, "ORC|NW|RX56", "TQ1|1||QD", "RXO|310965^Ibuprofen 200 MG^RXNORM|1||TAB|||||||20|TAB|x")
    )
    (rx,) = by_type(r, "MedicationOrder")
    assert (rx["order_id"], rx["frequency"], rx["quantity"], rx["refills"]) == ("RX56", "QD", "20 TAB", None)
    assert any(w.startswith("invalid_refills") for w in r.warnings)


# --------------------------------------------------------------------------- MDM
def test_mdm_t02_document():
    r = run(
        hl7(
            msh("MDM^T02^MDM_T02"),
            "EVN|T02|20240305",
            PID,
            seg("TXA", {1: "1", 2: "DS", 3: "TX", 4: "20240305100000", 6: "20240305090000", 12: "DOC-77", 17: "LA"}),
            "OBX|1|TX|||Discharge summary line 1",
            "OBX|2|TX|||Line 2 with \\S\\ caret",
            "OBX|3|ED|||APP^application^pdf^Base64^JVBERi0xLjQ=",
        )
    )
    (d,) = by_type(r, "Document")
    assert d["document_id"] == "DOC-77" and d["patient_id"] == "MRN123"
    assert (d["kind"], d["title"], d["status"]) == ("DS", "Discharge summary", "legally-authenticated")
    assert d["content_type"] == "application/pdf"
    assert d["text"].startswith("Discharge summary line 1\nLine 2 with ^ caret\n[embedded application/pdf")
    assert "JVBERi" not in d["text"]
    assert d["sha256"] and len(d["sha256"]) == 64
    assert d["authored_at"] == "2024-03-05T09:00:00"


# --------------------------------------------------------------------------- VXU
def test_vxu_immunizations():
    r = run(
        hl7(
            msh("VXU^V04^VXU_V04"),
            PID,
            "ORC|RE||IZ-1",
            "RXA|0|1|20240301||08^Hep B, adolescent or pediatric^CVX|0.5|mL^mL^UCUM||00^New immunization record^NIP001|"
            "^NURSE^NANCY|||||LOT123|20250101|MSD^Merck^MVX|||CP|A",
            "RXR|C28161^Intramuscular^NCIT|LT^Left Thigh^HL70163",
            "OBX|1|CE|64994-7^Eligibility^LN|1|V02^Medicaid^HL70064||||||F",
            "ORC|RE||IZ-2",
            "RXA|0|1|20230101||998^No vaccine administered^CVX|999||||||||||||||NA",
        )
    )
    assert by_type(r, "Observation") == []  # an immunization is not a lab observation (issue 14)
    imm = by_type(r, "Immunization")
    assert len(imm) == 2
    a = imm[0]
    assert a["vaccine"] == {"system": "CVX", "code": "08", "display": "Hep B, adolescent or pediatric"}
    assert (a["amount"], a["amount_units"]) == (0.5, "mL")
    assert (a["status"], a["administered_at"], a["immunization_id"]) == ("completed", "2024-03-01", "IZ-1")
    assert a["lot_number"] == "LOT123" and a["manufacturer"]["display"] == "Merck"
    assert a["route"] == "Intramuscular" and a["funding_eligibility"]["code"] == "V02"
    assert (imm[1]["amount"], imm[1]["status"], imm[1]["completion_status"]) == (None, "not-done", "NA")


# --------------------------------------------------------------------------- header / rejections
@pytest.mark.parametrize(
    "raw, code",
    [
        (hl7(msh("ACK^R01^ACK"), "MSA|AA|CTRL0"), "not_clinical_ack"),
        (hl7(msh("ACK"), "MSA|AA|CTRL0"), "not_clinical_ack"),
        (hl7(msh("BAR^P01"), PID), "unsupported_message_type"),
        (hl7(msh("ADT^A99"), PID), "unsupported_message_type"),
        (hl7(msh("ADT^A03*", version="2.7"), PID), "unsupported_message_type"),
        (hl7(msh("ADT^A01", version="1.0"), PID), "unsupported_version"),
        (hl7(msh("ADT^A01", version="2.2"), PID), "unsupported_version"),
        (hl7(msh("ADT^A01", version="2.9"), PID), "unsupported_version"),
        (hl7(msh("ADT^A01", version="2.8.1000000000"), PID), "unsupported_version"),
        (hl7(msh("ADT^A01", version=""), PID), "missing_version"),
        (hl7(msh("ADT^A01", control=""), PID), "missing_control_id"),
        (hl7(msh("", control="X"), PID), "missing_message_type"),
        (hl7("MSH|^~\\&|A|B"), "truncated_msh"),
        (hl7("PID|1||1"), "missing_msh"),
        (b"\x00\xff\x10garbage", "missing_msh"),
        (b"", "empty_message"),
        (hl7(msh("ADT^A01"), "PID|1"), "missing_patient_id"),
        (hl7(msh("ADT^A01"), "EVN|A01"), "missing_pid_segment"),
        (hl7(msh("SIU^S12"), PID), "missing_sch_segment"),
        (hl7(msh("MDM^T02"), PID), "missing_txa_segment"),
        (hl7(msh("ADT^A01"), PID, msh("ADT^A01", control="C2"), PID), "multiple_messages"),
    ],
)
def test_rejections(raw, code):
    assert rejected(raw).reason_code == code


def test_supported_versions():
    for v in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"):
        r = run(hl7(msh("ADT^A08", version=v), PID))
        assert r.records[0].record_type == "Patient"
    r = run(hl7(msh("ADT^A08", version="2.5^FRA^2.11"), PID))
    assert r.message_type == "ADT^A08"


def test_message_id_depends_on_sender_control_id_and_content():
    a = run(hl7(msh("ADT^A08"), PID))
    b = run(hl7(msh("ADT^A08"), PID.replace("DOE", "ROE")))  # control id reused, new content
    c = run(hl7(msh("ADT^A08", control="CTRL2"), PID))
    again = run(hl7(msh("ADT^A08"), PID))
    assert len({a.message_id, b.message_id, c.message_id}) == 3 and again.message_id == a.message_id
    assert a.control_key == b.control_key != c.control_key  # the worker flags a's id reused by b
    assert len(a.message_id) == 32


def test_malformed_dates_warn_or_reject_in_strict_mode():
    raw = hl7(msh("ADT^A08"), PID.replace("19800102", "Aug 15, 1942"))
    r = run(raw)
    assert by_type(r, "Patient")[0]["birth_date"] == "Aug 15, 1942"
    assert any(w.startswith("malformed_date PID-7") for w in r.warnings)
    e = rejected(raw, strict=True)
    assert e.reason_code in ("malformed_date", "hl7_validation_failed")


def test_strict_mode_uses_hl7apy():
    good = hl7(
        "MSH|^~\\&|LAB|FAC|EHR|CLINIC|20240305143000||ORU^R01^ORU_R01|CTRL1|P|2.5.1",
        "PID|1||67890^^^MRN||SMITH^JANE^B||19901215|F",
        "ORC|RE|ORD001|LAB001||CM",
        "OBR|1|ORD001|LAB001|CBC^Complete Blood Count^LN|||20260309100000",
        "OBX|1|NM|WBC^White Blood Cell Count^LN||7.5|10*3/uL|4.5-11.0|N|||F",
    )
    assert len(run(good, strict=True).records) == 3
    bad = hl7(msh("ADT^A01"), PID)  # ADT_A01 requires EVN and PV1
    e = rejected(bad, strict=True)
    assert e.reason_code == "hl7_validation_failed"
    assert "hl7apy" in e.reason and "EVN" in e.reason
    assert run(bad).records  # non-strict accepts it


def test_z_segments_and_unknown_segments_do_not_break_normalization():
    r = run(hl7(msh("ADT^A08"), PID, "ZPI|custom|data^with^components", "ZBE|1|2"))
    assert [x.record_type for x in r.records] == ["Patient"]


def test_every_supported_type_is_covered():
    assert {f"{t}^{e}" for t, e in SUPPORTED} >= {
        "ADT^A01",
        "ADT^A03",
        "ADT^A04",
        "ADT^A08",
        "ADT^A28",
        "ADT^A31",
        "ADT^A40",
        "ORU^R01",
        "ORM^O01",
        "OML^O21",
        "SIU^S12",
        "SIU^S13",
        "SIU^S14",
        "SIU^S15",
        "RDE^O11",
        "OMP^O09",
        "MDM^T02",
        "DFT^P03",
        "VXU^V04",
    }


def test_inline_numeric_obx_path_matches_the_general_reader():
    """ORU's inline fast path for plain NM results gives what _observation gives."""
    from practiceflow.processors.hl7 import normalize as N
    from practiceflow.processors.hl7.parser import parse

    lines = [
        "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F|||20240305120000",
        "OBX|2|NM|2951-2^Sodium^LN||139|mmol/L|136-145||||F",
        "OBX|3|NM|2823-3^Potassium^LN|2|5.4|mmol/L^mmol/L^UCUM|3.5-5.1|H^High^HL70078|||C|||202403051200-0500",
        "OBX|4|NM|2823-3^Potassium^LN|2|-1.5e3|||||F|||2024",
        "OBX|5|NM|1742-6^ALT^LN||31|U/L|7-56|N|||F|||20240305120000|||||||||LABCORP",
    ]
    raw = hl7(msh("ORU^R01"), PID, "OBR|1|ORD9", *lines)
    first = run(raw)  # fills the OBX-3 coding memo
    second = run(raw)  # takes the inline path where it applies
    assert first.records == second.records
    m = parse(raw)
    src = second.records[0].value["source"]
    ctx = N._Ctx(m, PRACTICE, False, src, [], "R01", m.plain)
    seen: set[str] = set()
    general = [
        N._observation(ctx, seg, line, "MRN123", "ORD9", None, seen, i + 1)
        for i, (seg, line) in enumerate(x for x in zip(m.segs, m.lines, strict=True) if x[0][0] == "OBX")
    ]
    assert [r.value for r in second.records if r.record_type == "Observation"] == general
    assert general[2]["units"] == "mmol/L" and general[2]["abnormal_flags"] == ["H"]
    assert general[4]["performer"] == "LABCORP"


def test_no_reference_cycles_and_gc_state_restored():
    """normalize_hl7 pauses the cyclic collector; that is only safe if it builds no cycles."""
    import gc

    from tests.fixtures import oru_r01

    gc.collect()
    gc.disable()
    try:
        result = normalize_hl7(oru_r01(), "p", 0)
        assert not gc.isenabled()  # a disabled collector stays disabled
        del result
        assert gc.collect() == 0
    finally:
        gc.enable()
    normalize_hl7(oru_r01(), "p", 0)
    assert gc.isenabled()
    with pytest.raises(Rejected):
        normalize_hl7(b"garbage", "p", 0)
    assert gc.isenabled()


def test_any_bytes_like_or_text_input_gives_the_same_records():
    """The compiled build must accept what the Python one does (only Rejected may escape)."""
    expected = run(ORU)
    for form in (bytearray(ORU), memoryview(ORU), ORU.decode("ascii")):
        got = normalize_hl7(form, PRACTICE, RECEIVED)
        assert [(r.record_type, r.key, r.value) for r in got.records] == [
            (r.record_type, r.key, r.value) for r in expected.records
        ]
