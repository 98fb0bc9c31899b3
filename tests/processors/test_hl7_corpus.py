"""The HL7 v2 processor over the shared public sample pool (``<shared>/hl7/**``).

Data folder: ``tests.fixtures.shared_data_dir()`` (``$PRACTICEFLOW_SHARED_DATA``, else
``<repo>/../shared/data``). Every test here carries the ``corpus`` marker (deselect with
``-m "not corpus"``). Without the data folder the outcome test fails with a message saying
where it looked (it never passes by collecting nothing).

Contract checked for every file: ``normalize_hl7`` returns records that validate against
the Avro schemas, or raises ``Rejected`` (never ``internal_error``, never anything else);
batch files are split first. What each file becomes (normalized, or rejected with which
reason) is pinned per file in ``corpus_outcomes.HL7``; specific records are asserted for
known files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastavro.validation import validate

from practiceflow.processors.base import Rejected
from practiceflow.processors.hl7.ack import build_ack
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.hl7.parser import parse, split_batch
from practiceflow.schemas.avro_gen import load_parsed
from tests.fixtures import outcome_totals, require_corpus, shared_data_path
from tests.processors import corpus_outcomes

pytestmark = pytest.mark.corpus

PRACTICE = "corpus-practice"
HL7_DIR = shared_data_path() / "hl7"
FILES = sorted(p for p in HL7_DIR.rglob("*.hl7")) if HL7_DIR.is_dir() else []
IDS = [str(p.relative_to(HL7_DIR)) for p in FILES]


def _messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return split_batch(data) if path.parent.name == "batch" else [data]


def _normalize(raw: bytes, strict: bool = False):
    """-> NormalizeResult or the Rejected; anything else fails the test."""
    try:
        result = normalize_hl7(raw, PRACTICE, 1_700_000_000_000, strict=strict)
    except Rejected as e:
        assert e.reason_code != "internal_error", e.reason
        assert e.reason_code and e.reason
        return e
    assert result.records, "a result always carries records"
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.key.startswith(PRACTICE + "/")
    return result


def _records(name: str, record_type: str, index: int = 0) -> list[dict]:
    result = _normalize(_messages(HL7_DIR / name)[index])
    assert not isinstance(result, Rejected), f"{name}: {result}"
    return [r.value for r in result.records if r.record_type == record_type]


def _reason(name: str) -> str:
    result = _normalize((HL7_DIR / name).read_bytes())
    assert isinstance(result, Rejected), f"{name} should be rejected"
    return result.reason_code


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_file_normalizes_or_is_rejected(path: Path):
    messages = _messages(path)
    assert messages, f"{path.name}: nothing to normalize"
    for raw in messages:
        _normalize(raw)
        ack = build_ack(raw, "AA", now="20240101000000")
        assert parse(ack).segment("MSA") is not None
    if path.parent.name == "batch":
        whole = _normalize(path.read_bytes())
        assert len(messages) == 1 or (isinstance(whole, Rejected) and whole.reason_code == "multiple_messages")


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_file_in_strict_mode(path: Path):
    for raw in _messages(path):
        _normalize(raw, strict=True)


def test_every_file_has_its_expected_outcome():
    """Per file, per message: normalized or the exact rejection code (the README's corpus table)."""
    hl7_dir = require_corpus("hl7")
    actual: dict[str, str | list[str]] = {}
    for path in sorted(hl7_dir.rglob("*.hl7")):
        outcomes = []
        for raw in _messages(path):
            r = _normalize(raw)
            outcomes.append("normalized" if not isinstance(r, Rejected) else f"rejected:{r.reason_code}")
        actual[str(path.relative_to(hl7_dir))] = outcomes[0] if len(outcomes) == 1 else outcomes
    assert actual == corpus_outcomes.HL7
    assert outcome_totals(actual) == (87, 35)  # README: 122 messages, 87 normalized, 35 rejected


# ----------------------------------------------------------------- known files
def test_oru_with_five_obx_gives_five_observations():
    obs = _records("oru_r01_v251_cbc_5obx_normal_flags.hl7", "Observation")
    assert len(obs) == 5
    assert [o["code"]["code"] for o in obs] == ["WBC", "RBC", "HGB", "HCT", "PLT"]
    assert [o["value_numeric"] for o in obs] == [7.5, 4.8, 14.2, 42.1, 250.0]
    assert all(o["abnormal_flags"] == ["N"] and o["order_id"] == "ORD001" for o in obs)
    assert len({o["observation_id"] for o in obs}) == 5
    (order,) = _records("oru_r01_v251_cbc_5obx_normal_flags.hl7", "Order")
    assert order["order_id"] == "ORD001" and order["filler_order_number"] == "LAB001"


def test_escape_sequences_in_name():
    (p,) = _records("adt_a01_v25_escape_f_s_r_e_in_name.hl7", "Patient")
    assert p["family_name"] == "Test|Value^Special~Chars\\Escape"


def test_a40_sets_merged_from():
    pats = _records("adt_a40_v28_two_pid_mrg_pairs.hl7", "Patient")
    assert [(p["patient_id"], p["merged_from"]) for p in pats] == [("12345", ["56789"]), ("145", ["569"])]
    (p,) = _records("adt_a40_v23_mirth_merge_mrg.hl7", "Patient")
    assert (p["patient_id"], p["merged_from"], p["event"]) == ("1765431", ["1765475"], "A40")


def test_custom_delimiters_file():
    (p,) = _records("adt_a01_v25_custom_delimiters_hash_bang.hl7", "Patient")
    assert (p["patient_id"], p["family_name"], p["given_names"]) == ("12345", "DOE", ["JOHN", "A"])


def test_mllp_framed_file():
    (p,) = _records("adt_a01_v251_mllp_framed_vt_fs_cr.hl7", "Patient")
    assert (p["patient_id"], p["family_name"]) == ("123456", "Doe")


def test_utf8_names():
    (p,) = _records("adt_a01_v25_utf8_non_ascii_names.hl7", "Patient")
    assert p["family_name"] == "M\u00dcLLER" and p["given_names"] == ["JOS\u00c9", "\u00d1"]
    assert p["address"]["line"] == ["Stra\u00dfe der Einheit 42"] and p["address"]["city"] == "M\u00fcnchen"


def test_bom_and_trailing_spaces():
    (p,) = _records("adt_a01_v23_bom_trailing_spaces.hl7", "Patient")
    assert (p["patient_id"], p["family_name"], p["birth_date"]) == ("10006579", "DUCK", "1924-10-10")
    assert len(_records("adt_a01_v23_bom_trailing_spaces.hl7", "Coverage")) == 3


def test_sn_value_and_high_flag():
    (o,) = _records("oru_r01_v24_ghh_glucose_sn_high_flag.hl7", "Observation")
    assert (o["value_type"], o["value"], o["value_numeric"], o["abnormal_flags"]) == ("SN", "182", 182.0, ["H"])
    assert o["reference_range"] == "70_105" and o["effective_at"] == "2002-02-15T07:30:00+06:00"


def test_formatting_and_hex_escapes():
    m = parse((HL7_DIR / "orm_o01_v23_crlf_escapes_br_h_n_x0d0a.hl7").read_bytes())
    assert m.get("NTE", 3) == "some text\nsome text after new line\nissue Efferent-Health#82"
    assert m.get("NTE", 3, index=1) == "some text\r\nsome text after new line\r\nissue Efferent-Health#81"


# ------------------------------------------------------------- issue 14: content no longer dropped
def test_vxu_cdc_example_gives_immunizations_with_their_obx():
    assert _records("vxu_v04_v251_cdc_iis_ig_example.hl7", "Observation") == []
    imm = _records("vxu_v04_v251_cdc_iis_ig_example.hl7", "Immunization")
    assert [(i["vaccine"]["system"], i["vaccine"]["code"]) for i in imm] == [
        ("CVX", "85"),
        ("CVX", "110"),
        ("CVX", "48"),
    ]
    assert [i["immunization_id"] for i in imm] == ["65929", "65930", "65949"]
    hist, dtap, hib = imm
    assert (hist["primary_source"], hist["amount"], hist["observations"]) == (False, None, [])
    assert (dtap["lot_number"], dtap["manufacturer"]["code"], dtap["amount"], dtap["amount_units"]) == (
        "xy3939",
        "SKB",
        0.5,
        "mL",
    )
    assert (dtap["route"], dtap["site"], dtap["status"]) == ("IM", "Right Thigh", "completed")
    assert [o["code"]["code"] for o in dtap["observations"]] == ["64994-7", "29769-7", "69764-9"]
    assert dtap["funding_eligibility"]["code"] == "V02" and hib["site"] == "left Thigh"


def test_vxu_nist_example_keeps_its_four_obx():
    imm = _records("vxu_v04_v251_nist_z22_bom.hl7", "Immunization")
    assert [i["vaccine"]["code"] for i in imm] == ["49281-0215-88", "88", "88"]
    first = imm[0]
    assert [o["code"]["code"] for o in first["observations"]] == ["30963-3", "64994-7", "69764-9", "29769-7"]
    assert (first["funding_source"]["code"], first["funding_eligibility"]["code"]) == ("PHC70", "V01")
    assert (first["lot_number"], first["route"], first["site"]) == ("315841", "Intramuscular", "Right Deltoid")


ORDER_OBX = {  # file -> (order id, OBX-3 codes of its observations)
    "orm_o01_v251_nte_after_obx.hl7": ("2801690163", ["57723-9"]),
    "orm_o01_v26_elr_order.hl7": ("73a6e9bd-aaec-418e-813a-0ad33366ca85", ["94558-4"]),
    "orm_o01_v27_elr_order.hl7": (None, None),
    "oml_o21_v251_mdhhs_public_health_lab.hl7": ("ORD723222", ["AOE15"]),
}


@pytest.mark.parametrize("name", list(ORDER_OBX))
def test_obx_in_orders_become_observations_of_their_order(name: str):
    obs = _records(name, "Observation")
    order_ids = {o["order_id"] for o in _records(name, "Order")}
    assert obs and all(o["order_id"] in order_ids for o in obs)
    want_order, want_codes = ORDER_OBX[name]
    if want_order is not None:
        assert {o["order_id"] for o in obs} == {want_order}
        assert [o["code"]["code"] for o in obs] == want_codes


def test_orm_obx_notes_follow_the_observation():
    (o,) = _records("orm_o01_v251_nte_after_obx.hl7", "Observation")
    assert (o["value"], o["notes"]) == ("123456", ["note 1", "note 2"])


def test_orm_with_17_obx_gives_17_observations():
    assert len(_records("orm_o01_v24_mirth_crlf_17obx.hl7", "Observation")) == 17
    assert len(_records("batch/batch_fhs_bhs_orm_o01_v24_crlf_no_trailer.hl7", "Observation")) == 17


def test_oml_in1_becomes_coverage():
    (cov,) = _records("oml_o21_v251_mdhhs_public_health_lab.hl7", "Coverage")
    assert (cov["payer_id"], cov["payer_name"], cov["group_number"]) == ("LHC", "Lansing Health Care", "IG030101")


ADT_DG1 = ["adt_a01_v23_bom_trailing_spaces.hl7", "adt_a01_v251_full_dg1_in1_ssn_repetition.hl7"] + [
    f"adt_{e}.hl7"
    for e in (
        "a01_v28_full_gt1_in1_pr1_rf1",
        "a03_v28_discharge",
        "a08_v28_update_patient",
        "a28_v28_add_person",
        "a31_v28_update_person",
    )
]


@pytest.mark.parametrize("name", ADT_DG1)
def test_adt_dg1_becomes_a_condition(name: str):
    (c,) = _records(name, "Condition")
    assert c["code"]["code"] in ("71596", "R07.9", "422504002")
    assert c["patient_id"] == _records(name, "Patient")[0]["patient_id"]


def test_adt_v28_dg1_and_al1_details():
    (c,) = _records("adt_a01_v28_full_gt1_in1_pr1_rf1.hl7", "Condition")
    assert c["code"] == {"system": "SCT", "code": "422504002", "display": "Ischemic stroke(disorder)"}
    assert (c["condition_id"], c["onset"]) == ("DI20", "2004-01-25T11:40:25+04:20")
    for name in (
        "adt_a01_v28_full_gt1_in1_pr1_rf1.hl7",
        "adt_a28_v28_add_person.hl7",
        "adt_a31_v28_update_person.hl7",
    ):
        (a,) = _records(name, "AllergyIntolerance")
        assert (a["allergen"]["display"], a["allergen_type"], a["severity"]) == ("PENICILLIN", "EA", "mild")
        assert (a["reactions"], a["identified_at"]) == (["CODE16"], "2021-08-24")


def test_adt_al1_drug_allergies():
    al = _records("adt_a01_v26_crlf_msh2_doubled_backslash.hl7", "AllergyIntolerance")
    assert [(a["allergen"]["code"], a["allergen"]["display"], a["category"]) for a in al] == [
        ("00000741", "OXYCODONE", "medication"),
        ("00001433", "TRAMADOL", "medication"),
    ]
    assert al[0]["reactions"] == ["HYPOTENSION"]


def test_unmapped_segments_are_named_in_warnings():
    r = _normalize((HL7_DIR / "adt_a01_v25_fr_ihe_pam_zbe_zfa.hl7").read_bytes())
    assert {"unmapped_segment:ZBE", "unmapped_segment:ZFA"} <= set(r.warnings)
    r = _normalize((HL7_DIR / "oru_r01_v251_full_t_escape_abnormal_nte_spm.hl7").read_bytes())
    assert {"unmapped_segment:SPM", "unmapped_segment:NK1", "unmapped_segment:PD1"} <= set(r.warnings)
    assert len(r.warnings) == len(set(r.warnings))


def test_hex_escape_in_notes():
    obs = _records("oru_r01_v251_hex_escape_x0d0a_truncation_char.hl7", "Observation")
    assert obs[0]["notes"] == ["Interpretation: \nNormal <5.7\nPrediabetes: 5.7-6.4\nDiabetic: &#8805;6.5"]
    assert [o["abnormal_flags"] for o in obs] == [["H"], ["A"], ["A"], []]


def test_br_escape_in_nte():
    (o,) = _records("oru_r01_v23_covid_br_escape_nte.hl7", "Observation")
    assert o["value"] == "NEGATIVE" and "\n\n" in o["notes"][0] and "\\.br\\" not in o["notes"][0]


def test_base64_document_is_not_copied():
    (d,) = _records("mdm_t02_v26_fr_ed_base64_cda_document.hl7", "Document")
    assert d["content_type"] == "text/xml" and len(d["sha256"]) == 64
    assert len(d["text"]) < 1000 and "PD94bWwg" not in d["text"]


def test_ed_observation_keeps_a_marker():
    obs = _records("oru_r01_v25_fr_ed_base64_prt_metadata_obx.hl7", "Observation")
    eds = [o for o in obs if o["value_type"] == "ED"]
    assert eds and all(o["value"].startswith("[ED ") and len(o["value"]) < 80 for o in eds)


def test_rde_medication_order():
    (rx,) = _records("rde_o11_v28_pharmacy_encoded_order.hl7", "MedicationOrder")
    assert rx["order_id"] == "1163422591" and rx["refills"] == 12 and rx["medication"]["system"] == "NDC"


def test_siu_appointment_file():
    (a,) = _records("siu_s12_v251_schedule_aig.hl7", "Appointment")
    assert (a["appointment_id"], a["start"], a["duration_minutes"]) == ("APT001", "2026-03-25T14:00:00", 30)


def test_batches_split_into_messages():
    b = HL7_DIR / "batch"
    assert len(split_batch((b / "batch_fhs_bhs_oru_r01_v251_20msgs_cr_only.hl7").read_bytes())) == 20
    assert len(split_batch((b / "batch_fhs_bhs_oru_r01_v251_2msgs_bts_fts.hl7").read_bytes())) == 2
    assert len(split_batch((b / "batch_fhs_bhs_orm_o01_v24_crlf_no_trailer.hl7").read_bytes())) == 1
    siu = split_batch((b / "stream_siu_s12_s14_s15_v23_3msgs_lf_no_blank_lines.hl7").read_bytes())
    assert [normalize_hl7(m, PRACTICE, 0).message_type for m in siu] == ["SIU^S12", "SIU^S14", "SIU^S15"]


@pytest.mark.parametrize(
    "name, code",
    [
        ("malformed/rethink_invalid_missing_msh.hl7", "missing_msh"),
        ("malformed/rethink_invalid_wrong_version_1_0.hl7", "unsupported_version"),
        ("malformed/ti_orm_missing_msh10_control_id.hl7", "missing_control_id"),
        ("malformed/ti_msh_only_no_fields.hl7", "missing_encoding_characters"),
        ("malformed/ti_orm_missing_msh2_encoding_chars.hl7", "missing_encoding_characters"),
        ("malformed/nhapi_fuzz_mshh0_encoding_not_supported.hl7", "invalid_field_separator"),
        ("malformed/rs_truncated_msh.hl7", "truncated_msh"),
        ("malformed/rs_msh_declares_pipe_but_uses_hash.hl7", "invalid_encoding_characters"),
        ("ack_v04_v251_aa_accept.hl7", "not_clinical_ack"),
        ("bar_p01_v28_add_billing_account.hl7", "unsupported_message_type"),
    ],
)
def test_known_rejections(name: str, code: str):
    assert _reason(name) == code
