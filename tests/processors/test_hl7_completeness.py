"""Issue 14: HL7 content that used to be dropped without a word now becomes records
(OBX in ORM/OML, VXU immunizations with their OBX, ADT DG1 conditions, AL1 allergies,
IN1 in orders), and every segment a message type does not map leaves a warning."""

from __future__ import annotations

import pytest

from practiceflow.processors.hl7.normalize import UNMAPPED_PREFIX
from tests.processors.test_hl7_normalize import PID, by_type, hl7, msh, run, seg


def unmapped(result) -> list[str]:
    return [w[len(UNMAPPED_PREFIX) :] for w in result.warnings if w.startswith(UNMAPPED_PREFIX)]


# --------------------------------------------------------------------------- ORM / OML OBX
def test_orm_obx_answers_become_observations_linked_to_their_order():
    r = run(
        hl7(
            msh("ORM^O01^ORM_O01"),
            PID,
            "ORC|NW|P200||||||||20240305101500",
            "OBR|1|P200||2345-7^Glucose^LN",
            "OBX|1|CWE|49541-6^Fasting status^LN||Y^Yes^HL70136||||||O",
            "NTE|1||patient says 12 h",
            "OBX|2|TX|11450-4^Clinical history^LN||Type 2 diabetes, on metformin||||||O",
            "ORC|NW|P201",
            "OBR|1|P201||4548-4^HbA1c^LN",
            "OBX|1|NM|8302-2^Height^LN||170|cm|||||O",
        )
    )
    obs = by_type(r, "Observation")
    assert [(o["order_id"], o["code"]["code"]) for o in obs] == [
        ("P200", "49541-6"),
        ("P200", "11450-4"),
        ("P201", "8302-2"),
    ]
    assert obs[0]["value"] == "Yes (Y)" and obs[0]["notes"] == ["patient says 12 h"]
    assert obs[1]["value"] == "Type 2 diabetes, on metformin" and obs[1]["status"] == "O"
    assert obs[2]["value_numeric"] == 170.0 and obs[2]["units"] == "cm"
    assert len({o["observation_id"] for o in obs}) == 3
    assert [o["order_id"] for o in by_type(r, "Order")] == ["P200", "P201"]
    assert unmapped(r) == []


def test_oml_in1_al1_and_obx():
    r = run(
        hl7(
            msh("OML^O21^OML_O21"),
            PID,
            seg("IN1", {1: "1", 2: "PPO1^Gold PPO", 3: "BCBS01", 4: "Blue Cross", 36: "MEM-9"}),
            "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Anaphylaxis|20200101",
            "ORC|NW|A1",
            "OBR|1|A1||GLU^Glucose^L",
            "OBX|1|TS|AOE15^Date of last dose^L||20240301||||||O",
        )
    )
    (cov,) = by_type(r, "Coverage")
    assert (cov["payer_id"], cov["member_id"]) == ("BCBS01", "MEM-9")
    (al,) = by_type(r, "AllergyIntolerance")
    assert al["allergen"] == {"system": "RXNORM", "code": "70618", "display": "Penicillin"}
    assert (al["allergen_type"], al["category"], al["severity"]) == ("DA", "medication", "severe")
    assert al["reactions"] == ["Hives", "Anaphylaxis"] and al["identified_at"] == "2020-01-01"
    (o,) = by_type(r, "Observation")
    assert (o["order_id"], o["value"]) == ("A1", "2024-03-01")


def test_oru_is_unchanged_by_order_answers():
    """ORU keeps one Observation per OBX; nothing new is emitted for results."""
    from tests.processors.test_hl7_normalize import ORU

    r = run(ORU)
    assert len(by_type(r, "Observation")) == 9
    assert unmapped(r) == ["SPM"]


# --------------------------------------------------------------------------- VXU
VXU = hl7(
    msh("VXU^V04^VXU_V04"),
    PID,
    "PD1|||||||||||02^Reminder/recall^HL70215",
    "ORC|RE||IZ-1|||||||||1234^WELBY^MARCUS",
    "RXA|0|1|20240301||08^Hep B, adolescent or pediatric^CVX|0.5|mL^mL^UCUM||00^New immunization record^NIP001|"
    "^NURSE^NANCY|^^^CLINIC_A||||LOT123|20250101|MSD^Merck^MVX|||CP|A",
    "RXR|C28161^Intramuscular^NCIT|LT^Left Thigh^HL70163",
    "OBX|1|CE|64994-7^Eligibility^LN|1|V02^Medicaid^HL70064||||||F|||20240301",
    "OBX|2|CE|30963-3^Funding source^LN|2|VXC1^Federal funds^CDCPHINVS||||||F",
    "OBX|3|CE|69764-9^Document type^LN|3|253088698300003511070517^Hep B VIS^cdcgs1vis||||||F",
    "OBX|4|DT|29769-7^VIS presented^LN|3|20240301||||||F",
    "ORC|RE||IZ-2",
    "RXA|0|1|20230101||998^No vaccine administered^CVX|999||||||||||||00^Parental decision^NIP002||RE",
    "ORC|RE||IZ-3",
    "RXA|0|1|20220101||03^MMR^CVX|999|||01^Historical^NIP001||||||||||||D",
)


def test_vxu_gives_immunizations_with_their_obx():
    r = run(VXU)
    assert sorted({x.record_type for x in r.records}) == ["Immunization", "Patient"]
    imm = by_type(r, "Immunization")
    assert [i["immunization_id"] for i in imm] == ["IZ-1", "IZ-2", "IZ-3"]
    a = imm[0]
    assert a["vaccine"] == {"system": "CVX", "code": "08", "display": "Hep B, adolescent or pediatric"}
    assert (a["status"], a["completion_status"], a["administered_at"]) == ("completed", "CP", "2024-03-01")
    assert (a["amount"], a["amount_units"], a["lot_number"], a["expiration_date"]) == (
        0.5,
        "mL",
        "LOT123",
        "2025-01-01",
    )
    assert a["manufacturer"] == {"system": "MVX", "code": "MSD", "display": "Merck"}
    assert (a["route"], a["site"]) == ("Intramuscular", "Left Thigh")
    assert (a["performer"], a["location"], a["ordering_provider"]) == (
        "NURSE, NANCY",
        "CLINIC_A",
        "WELBY, MARCUS (1234)",
    )
    assert (a["primary_source"], a["information_source"]) == (True, "New immunization record")
    assert a["funding_eligibility"] == {"system": "HL70064", "code": "V02", "display": "Medicaid"}
    assert a["funding_source"]["code"] == "VXC1"
    assert [(o["code"]["code"], o["sub_id"], o["value"]) for o in a["observations"]] == [
        ("64994-7", "1", "Medicaid (V02)"),
        ("30963-3", "2", "Federal funds (VXC1)"),
        ("69764-9", "3", "Hep B VIS (253088698300003511070517)"),
        ("29769-7", "3", "2024-03-01"),
    ]
    assert a["observations"][0]["effective_at"] == "2024-03-01"
    refused = imm[1]
    assert (refused["status"], refused["status_reason"], refused["amount"]) == ("not-done", "Parental decision", None)
    assert (imm[2]["status"], imm[2]["primary_source"]) == ("entered-in-error", False)
    assert unmapped(r) == ["PD1"]


def test_vxu_without_orc_ids_gets_stable_distinct_ids():
    raw = hl7(
        msh("VXU^V04"),
        PID,
        "RXA|0|1|20240301||08^HepB^CVX|0.5|mL",
        "RXA|0|1|20240301||20^DTaP^CVX|0.5|mL",
    )
    ids = [i["immunization_id"] for i in by_type(run(raw), "Immunization")]
    assert len(set(ids)) == 2 and ids == [i["immunization_id"] for i in by_type(run(raw), "Immunization")]


# --------------------------------------------------------------------------- ADT DG1 / AL1
ADT = hl7(
    msh("ADT^A08^ADT_A01"),
    "EVN|A08|20240305",
    PID,
    "NK1|1|DOE^JOHN|SPO",
    "PV1|1|O|||||||||||||||||V9",
    "AL1|1|DA|70618^Penicillin^RXNORM|MO|Rash|20190101",
    "AL1|2|FA|^Peanuts||Anaphylaxis",
    seg("DG1", {1: "1", 2: "I10", 3: "E11.9^Type 2 diabetes mellitus^I10", 5: "20200115", 6: "F", 19: "20200116"}),
    seg("DG1", {1: "2", 3: "I10^Hypertension^I10", 6: "A"}),
    seg("DG1", {1: "3", 3: "R07.9^Chest pain^I10", 6: "W", 20: "DX-77", 21: "D"}),
    "ZPI|custom",
    "ZPI|again",
)


def test_adt_dg1_gives_conditions_and_al1_gives_allergies():
    r = run(ADT)
    conds = by_type(r, "Condition")
    assert [c["code"]["code"] for c in conds] == ["E11.9", "I10", "R07.9"]
    c = conds[0]
    assert c["code"] == {"system": "I10", "code": "E11.9", "display": "Type 2 diabetes mellitus"}
    assert (c["verification_status"], c["onset"], c["recorded_at"]) == ("confirmed", "2020-01-15", "2020-01-16")
    assert conds[1]["verification_status"] == "provisional"
    assert (conds[2]["condition_id"], conds[2]["verification_status"]) == ("DX-77", "entered-in-error")
    assert len({c["condition_id"] for c in conds}) == 3
    # the first DG1 still gives the encounter its reason
    (enc,) = by_type(r, "Encounter")
    assert enc["reason"] == "Type 2 diabetes mellitus"
    allergies = by_type(r, "AllergyIntolerance")
    assert [(a["allergen"]["display"], a["category"], a["severity"], a["reactions"]) for a in allergies] == [
        ("Penicillin", "medication", "moderate", ["Rash"]),
        ("Peanuts", "food", None, ["Anaphylaxis"]),
    ]
    # the same message again gives the same ids (an A08 repeating the list updates, not adds)
    again = run(ADT)
    assert [x.key for x in again.records] == [x.key for x in r.records]
    assert unmapped(r) == ["NK1", "ZPI"]  # once per segment type, sorted


def test_condition_ids_differ_between_patients():
    other = ADT.replace(b"MRN123", b"MRN999")
    a = {c["condition_id"] for c in by_type(run(ADT), "Condition") if not c["condition_id"].startswith("DX")}
    b = {c["condition_id"] for c in by_type(run(other), "Condition") if not c["condition_id"].startswith("DX")}
    assert a and b and not a & b


# --------------------------------------------------------------------------- unmapped segments
@pytest.mark.parametrize(
    "segments, expected",
    [
        ((msh("ADT^A08"), "EVN|A08|20240305", "SFT|x", PID), []),
        ((msh("ADT^A08"), PID, "ZBE|1|2", "ROL|1", "ZBE|3"), ["ROL", "ZBE"]),
        ((msh("SIU^S12"), "SCH|A1|B1", PID, "RGS|1", "NTE|1||x"), ["NTE", "RGS"]),
        ((msh("MDM^T02"), "EVN|T02", PID, "PV1|1|O", "TXA|1|DS|TX||||||||||D1", "OBX|1|TX|||t"), ["PV1"]),
        ((msh("RDE^O11"), PID, "ORC|NW|RX1", "RXE|^BID|123^Drug^RXNORM|5||mg", "RXC|B|x"), ["RXC"]),
    ],
)
def test_unmapped_segments_warn_once_per_type(segments, expected):
    assert unmapped(run(hl7(*segments))) == expected


# --------------------------------------------------------------------------- digits
def test_hl7_sp_escape_with_a_superscript_count_is_not_an_internal_error():
    r = run(hl7(msh("ADT^A08"), PID, "PV1|1|O|||||||||||||||||V1", "PV2|||R07^Chest\\.sp\u00b9\\pain"))
    assert by_type(r, "Encounter")[0]["reason"] == "Chest\npain"
