"""The X12 normalizer over the shared public sample pool (``<shared>/data/x12``).

The folder comes from ``PRACTICEFLOW_SHARED_DATA`` (default ``<repo>/../shared/data``
when it exists). Every file under ``x12/`` and ``x12/malformed/`` must either
normalize into records that validate against the committed Avro schemas or raise
:class:`Rejected` - in default and in strict mode, and never with
``internal_error``. Files absent from the folder simply produce no test cases;
known files get specific expectations (SOURCES.md says what each exercises).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastavro.validation import validate

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.schemas.avro_gen import load_parsed
from tests.fixtures import outcome_totals, require_corpus, shared_data_dir
from tests.processors import corpus_outcomes

pytestmark = pytest.mark.corpus

PID = "practice-corpus"
REPO = Path(__file__).resolve().parents[2]


DATA = shared_data_dir()
X12_DIR = DATA / "x12" if DATA is not None else None


def _files() -> list[Path]:
    if X12_DIR is None or not X12_DIR.is_dir():
        return []
    found = [p for p in sorted(X12_DIR.iterdir()) if p.is_file() and p.suffix != ".md"]
    malformed = X12_DIR / "malformed"
    if malformed.is_dir():
        found += [p for p in sorted(malformed.iterdir()) if p.is_file() and p.suffix != ".md"]
    return found


FILES = _files()
BY_NAME = {str(p.relative_to(X12_DIR)): p for p in FILES} if X12_DIR is not None else {}


def _id(p: Path) -> str:
    return str(p.relative_to(X12_DIR)) if X12_DIR is not None else p.name


def _normalize(name: str, *, strict: bool = False) -> NormalizeResult:
    return normalize_x12(BY_NAME[name].read_bytes(), PID, 1_700_000_000_000, strict=strict)


def _valid(result: NormalizeResult) -> None:
    assert result.records, "a NormalizeResult always carries records"
    assert result.message_id and result.message_type
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
        assert rec.key.startswith(PID + "/")
        assert rec.value["practice_id"] == PID
        src = rec.value["source"]
        assert src["feed"] == "x12" and src["message_id"].startswith(result.message_id)


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_every_file_normalizes_or_is_rejected(path: Path):
    raw = path.read_bytes()
    for strict in (False, True):
        try:
            result = normalize_x12(raw, PID, 1_700_000_000_000, strict=strict)
        except Rejected as exc:
            assert exc.reason_code != "internal_error", exc.reason
            assert exc.reason_code and exc.reason
            continue
        _valid(result)
        again = normalize_x12(raw, PID, 1_700_000_000_000, strict=strict)
        assert again.message_id == result.message_id
        assert [r.value for r in again.records] == [r.value for r in result.records]


def test_every_file_has_its_expected_outcome():
    """Per file: normalized or the exact rejection code (the README's corpus table); fails,
    rather than collecting nothing, when the corpus folder is missing."""
    require_corpus("x12")
    actual = {}
    for path in FILES:
        try:
            normalize_x12(path.read_bytes(), PID, 1_700_000_000_000)
        except Rejected as exc:
            actual[_id(path)] = f"rejected:{exc.reason_code}"
        else:
            actual[_id(path)] = "normalized"
    assert actual == corpus_outcomes.X12
    assert outcome_totals(dict(actual)) == (85, 18)  # README: 103 files, 85 normalized, 18 rejected


# --------------------------------------------------------------------------- expectations
def _claims(result: NormalizeResult) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in result.records:
        if r.record_type == "ClaimAdjudication":
            out.setdefault(r.value["claim_id"], []).append(r.value)
    return out


def _of(result: NormalizeResult, record_type: str) -> list[dict]:
    return [r.value for r in result.records if r.record_type == record_type]


def _line_adjs(claim: dict) -> list[tuple]:
    return [(a["group"], a["reason"], a["amount"]) for ln in claim["lines"] for a in ln["adjustments"]]


def exp_emedny_co29(res: NormalizeResult) -> None:
    claims = _of(res, "ClaimAdjudication")
    assert [c["status_code"] for c in claims] == ["1", "2", "2"]
    denied = claims[1]
    assert denied["paid"] == 0.0 and denied["total_charge"] == 34.0
    assert _line_adjs(denied) == [("CO", "29", 12.0), ("CO", "29", 22.0)]  # timely filing
    assert denied["member_id"] == "LL88888L"
    partial = claims[2]
    assert ("CO", "251", 2.75) in _line_adjs(partial)
    assert [ln["remark_codes"] for ln in partial["lines"]][-2:] == [["N206"], ["N206"]]
    assert claims[0]["payer_name"] == "NYSDOH" and claims[0]["payee_npi"] == "9999999995"
    assert claims[0]["payment_trace"] == "10100000000" and claims[0]["payment_date"] == "2010-01-01"


def exp_pr29_timely_filing(res: NormalizeResult) -> None:
    c = _claims(res)
    denial = c["EDI DENIAL"][0]
    assert denial["paid"] == 0.0 and denial["patient_responsibility"] == 1088.0
    assert _line_adjs(denial) == [("PR", "29", 1088.0)]
    assert denial["lines"][0]["modifiers"] == ["P2"] and denial["lines"][0]["service_date"] == "2009-01-13"
    assert denial["patient_id"] == "11223344" and denial["member_id"] == "BBB1A2A1A2A1A2A"
    paid = c["EDI PAID"][0]
    assert _line_adjs(paid) == [("PR", "3", 30.0), ("CO", "45", 12.56)]


def exp_reversals_4010(res: NormalizeResult) -> None:
    c = _claims(res)
    assert len(c) == 9
    for claim_id, charge in (("123456", -42.58), ("090909", -86.76)):
        (rev,) = c[claim_id]
        assert rev["reversal"] is True and rev["status_code"] == "22" and rev["total_charge"] == charge
    assert [a["group"] for a in c["999999"][0]["lines"][0]["adjustments"]] == ["CR", "CO"]
    assert ("PI", "104", 136.72) in _line_adjs(c["777777"][0])
    assert ("CO", "29", 162.13) in _line_adjs(c["888888"][0])
    assert ("OA", "23", -1.08) in _line_adjs(c["121212"][0])
    assert c["090909"][0]["lines"][0]["remark_codes"] == ["MA92"]
    assert any("CLP*090909*22" in w for w in res.warnings)  # the truncated duplicate CLP is skipped
    (plb,) = _of(res, "ProviderAdjustment")
    assert (plb["reason"], plb["reference"], plb["amount"]) == ("CV", "9876514", -1.27)


def exp_medicare_part_a(res: NormalizeResult) -> None:
    c = _claims(res)
    assert [a["reason"] for a in c["666123"][0]["adjustments"]] == ["45"]
    assert c["666123"][0]["adjustments"][0]["amount"] == 73348.57
    assert c["777777"][0]["remark_codes"] == ["MA02"]
    (plb,) = _of(res, "ProviderAdjustment")
    assert plb == {
        **plb,
        "provider_id": "6543210903",
        "fiscal_period_end": "2002-12-31",
        "reason": "CV",
        "reference": "CP",
        "amount": -1.27,
        "payment_trace": "12345",
    }


def exp_nv_medicaid_plb(res: NormalizeResult) -> None:
    plbs = _of(res, "ProviderAdjustment")
    assert [(p["reason"], p["amount"]) for p in plbs] == [("72", -14.0), ("WO", 14.0), ("B2", -14.0)]
    assert {p["provider_id"] for p in plbs} == {"15483NN082"}
    c = _claims(res)
    assert [(a["group"], a["reason"], a["amount"]) for a in c["77777777"][0]["adjustments"]] == [
        ("OA", "147", 50016.0),
        ("CO", "26", 22216.0),
    ]
    assert c["77777778"][0]["adjustments"][0]["reason"] == "176"


def exp_plb_only(res: NormalizeResult) -> None:
    plbs = _of(res, "ProviderAdjustment")
    assert len(plbs) == 6
    assert [(p["provider_id"], p["reason"], p["amount"]) for p in plbs[:2]] == [
        ("PAYEE_ID1", "WO", 298.18),
        ("PAYEE_ID1", "72", -298.18),
    ]
    assert {p["payment_trace"] for p in plbs} == {"TRN1", "CHECK_1", "TRN3"}
    (claim,) = _of(res, "ClaimAdjudication")
    assert claim["payee_npi"] == "PROVIDER2_NPI" and claim["payment_trace"] == "CHECK_1"


def exp_plb_90(res: NormalizeResult) -> None:
    (plb,) = _of(res, "ProviderAdjustment")
    assert (plb["reason"], plb["amount"]) == ("90", 3.95)
    assert [c["claim_id"] for c in _of(res, "ClaimAdjudication")] == ["ABC9001", "ABC9002"]


def exp_uhc_multi_cas(res: NormalizeResult) -> None:
    c = _claims(res)["001-18604-358"][0]
    assert _line_adjs(c)[-3:] == [("PR", "2", 5.13), ("PR", "1", 110.0), ("CO", "45", 184.32)]
    assert c["lines"][0]["procedure"]["code"] == "B4154"  # '>' component separator


def exp_dental_predetermination(res: NormalizeResult) -> None:
    c = _claims(res)
    pre = c["PRECERTIFICATION"][0]
    assert pre["status_code"] == "25" and [(a["group"], a["reason"]) for a in pre["adjustments"]] == [("OA", "101")]
    assert pre["lines"][2]["remark_codes"] == ["N30"] and pre["lines"][0]["procedure"]["code"] == "D1110"
    assert _line_adjs(c["EDI DENIED"][0]) == [("PR", "32", 3790.0)]


def exp_no_envelope(res: NormalizeResult) -> None:
    (c,) = _of(res, "ClaimAdjudication")
    assert c["claim_id"] == "200200964A52"
    assert _line_adjs(c) == [("CO", "42", 34.6), ("PR", "2", 117.54), ("PR", "3", 25.0)]
    assert any(w.startswith("missing_isa:") for w in res.warnings)


def exp_277ca_rejected(res: NormalizeResult) -> None:
    (s,) = _of(res, "ClaimStatus")
    assert (s["category_code"], s["status_code"], s["entity_code"], s["accepted"]) == ("A7", "562", "85", False)
    assert s["payer_claim_control_number"] == "1107000000001120" and s["claim_id"] == "3920394930203"


def exp_277ca_accepted(res: NormalizeResult) -> None:
    (s,) = _of(res, "ClaimStatus")
    assert (s["claim_id"], s["category_code"], s["status_code"], s["accepted"]) == ("5781", "A2", "20", True)
    assert s["payer_claim_control_number"] == "1107000000014420"
    assert res.message_type == "277CA"


def exp_277_claim_level(res: NormalizeResult) -> None:
    st = _of(res, "ClaimStatus")
    assert [(s["category_code"], s["status_code"], s["entity_code"]) for s in st] == [
        ("P3", "317", None),
        ("F0", "3", None),
        ("F2", "88", "QC"),
    ]
    assert st[1]["paid"] == 7599.0


def exp_277_provider_level(res: NormalizeResult) -> None:
    st = _of(res, "ClaimStatus")
    assert [(s["claim_id"] is None, s["category_code"]) for s in st] == [(False, "P3"), (True, "E0")]


def exp_271_subscriber(res: NormalizeResult) -> None:
    (r,) = _of(res, "EligibilityResponse")
    assert r["active"] is True and r["member_id"] == "123456789" and r["birth_date"] == "1963-05-19"
    copays = [(b["amount"], b["in_network"]) for b in r["benefits"] if b["info_code"] == "B"]
    assert copays == [(10.0, "Y"), (30.0, "N")]
    assert r["benefits"][2]["service_types"] == ["1", "33", "35", "47", "86", "88", "98", "AL", "MH", "UC"]
    assert r["trace_number"] == "93175-012547"


def exp_271_aaa_42(res: NormalizeResult) -> None:
    (r,) = _of(res, "EligibilityResponse")
    assert r["rejections"] == ["42"] and r["active"] is None


def exp_271_aaa_50(res: NormalizeResult) -> None:
    (r,) = _of(res, "EligibilityResponse")
    assert r["rejections"] == ["50"] and r["member_id"] is None


def exp_271_batch(res: NormalizeResult) -> None:
    resp = _of(res, "EligibilityResponse")
    assert len(resp) > 100 and all(r["member_id"] for r in resp)
    assert len({r["response_id"] for r in resp}) == len(resp)


def exp_999_partial(res: NormalizeResult) -> None:
    (ack,) = _of(res, "InterchangeAck")
    assert ack["accepted"] == "P" and ack["acknowledged_control_numbers"][0] == "17456"
    assert any("CLM01:123456789" in e for e in ack["errors"])


def exp_999_with_ta1(res: NormalizeResult) -> None:
    kinds = [(a["kind"], a["accepted"]) for a in _of(res, "InterchangeAck")]
    assert kinds == [("TA1", "A"), ("999", "R")]


def exp_ta1_rejected(res: NormalizeResult) -> None:
    (ack,) = _of(res, "InterchangeAck")
    assert (ack["kind"], ack["accepted"]) == ("TA1", "R")
    assert ack["errors"] == ["TA1 006: invalid interchange sender ID"]


def exp_837p_example1(res: NormalizeResult) -> None:
    (c,) = _of(res, "Claim")
    assert c["claim_id"] == "26463774" and c["total_charge"] == 100.0 and len(c["lines"]) == 4
    assert c["payer_name"] == "KEY INSURANCE COMPANY"


def exp_837i_two_claims(res: NormalizeResult) -> None:
    claims = _of(res, "Claim")
    assert [c["claim_id"] for c in claims] == ["756048Q", "756049Q"]
    assert claims[0]["service_date"] == "2005-03-15"


EXPECTATIONS = {
    "835_emedny_denied_co29_co251_lq_he_n206.x12": exp_emedny_co29,
    "835_denied_pr29_timely_filing_and_paid_pr3_co45.x12": exp_pr29_timely_filing,
    "malformed/835_4010_envelope_reversals_clp22_cr_group_pi104.x12": exp_reversals_4010,
    "835_tr3_medicare_part_a_co45_mia_moa_ma02_plb_cv.x12": exp_medicare_part_a,
    "malformed/835_nv_medicaid_denied_oa147_co26_oa176_plb_72_wo_b2.x12": exp_nv_medicaid_plb,
    "malformed/835_plb_only_wo_72_recoupment_3st.x12": exp_plb_only,
    "malformed/835_services_co45_pr3_plb_90.x12": exp_plb_90,
    "835_uhc_style_dme_co45_pr1_pr2_multi_reason_cas.x12": exp_uhc_multi_cas,
    "835_dental_predetermination_clp25_oa101_pr42_lq_n30_pr32.x12": exp_dental_predetermination,
    "malformed/835_no_isa_gs_envelope_bcbs_nc_co42_pr2_pr3.x12": exp_no_envelope,
    "277CA_emedny_rejected_a7_562_bom_indented.x12": exp_277ca_rejected,
    "277CA_emedny_accepted_a1_a2.x12": exp_277ca_accepted,
    "277_tr3_claim_level_p3_317_f0_3_f2_88.x12": exp_277_claim_level,
    "277_tr3_provider_level_p3_e0_24_85.x12": exp_277_provider_level,
    "271_tr3_subscriber_active_eb1_copay_eb_b_ls_le.x12": exp_271_subscriber,
    "271_aaa_42_unable_to_respond_eb_p_masked.x12": exp_271_aaa_42,
    "malformed/271_tr3_aaa_50_placeholder_envelope_gs01_xx.x12": exp_271_aaa_50,
    "271_gainwell_style_batch_synthetic.x12": exp_271_batch,
    "999_partial_accept_ik3_ik4_ctx_wisconsin.x12": exp_999_partial,
    "999_rejected_with_ta1_ik3_clm.x12": exp_999_with_ta1,
    "TA1_rejected_006_gt_sep_plus_term.x12": exp_ta1_rejected,
    "837P_tr3_example1.x12": exp_837p_example1,
    "837I_tr3_two_claims_single_provider.x12": exp_837i_two_claims,
}


@pytest.mark.parametrize("name", [n for n in EXPECTATIONS if n in BY_NAME])
def test_known_file(name: str):
    result = _normalize(name)
    _valid(result)
    EXPECTATIONS[name](result)


# Files SOURCES.md lists as failing the envelope check but carrying denial content a
# lenient parser should keep (some may be held out of this folder).
DENIAL_CONTENT = [
    "malformed/835_nv_medicaid_denied_oa147_co26_oa176_plb_72_wo_b2.x12",
    "malformed/835_services_co45_pr3_plb_90.x12",
    "malformed/835_nv_medicaid_3st_plb_ct_cs_oa147_co26_oa176.x12",
    "malformed/835_institutional_denied_co16_lq_he_n142.x12",
    "malformed/835_dental_all_fields_moa_ma01_ma07_co197_co131_lq_he_m1.x12",
    "malformed/835_plb_only_wo_72_recoupment_3st.x12",
    "malformed/835_4010_envelope_reversals_clp22_cr_group_pi104.x12",
    "malformed/271_zirmed_style_rich_benefits_pipe_sep_eb_i_noncovered.x12",
]


@pytest.mark.parametrize("name", [n for n in DENIAL_CONTENT if n in BY_NAME])
def test_malformed_files_with_denial_content_are_kept_in_default_mode(name: str):
    result = _normalize(name)
    _valid(result)
    assert result.warnings  # what was wrong is reported
    if name.split("/")[-1].startswith("835"):
        adjustments = [
            a
            for r in result.records
            if r.record_type == "ClaimAdjudication"
            for a in r.value["adjustments"] + [x for ln in r.value["lines"] for x in ln["adjustments"]]
        ]
        assert adjustments or any(r.record_type == "ProviderAdjustment" for r in result.records)


@pytest.mark.parametrize(
    "name", [n for n in BY_NAME if n.split("/")[-1][:3] in ("270", "276", "278") and "_response_" not in n]
)
def test_outbound_transactions_are_rejected_as_unsupported(name: str):
    with pytest.raises(Rejected) as exc:
        _normalize(name)
    assert exc.value.reason_code == "unsupported_transaction"


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in ("malformed/835_garbage_values_newline_terminated.x12", "malformed/835_invalid_values_4010_pb2.x12")
        if n in BY_NAME
    ],
)
def test_garbage_835_is_rejected(name: str):
    with pytest.raises(Rejected) as exc:
        _normalize(name)
    assert exc.value.reason_code == "no_records"


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in ("malformed/835_no_isa_gs_envelope_bcbs_nc_co42_pr2_pr3.x12", "malformed/837P_imsweb_no_isa_line.x12")
        if n in BY_NAME
    ],
)
def test_no_envelope_is_rejected_in_strict_mode(name: str):
    with pytest.raises(Rejected) as exc:
        _normalize(name, strict=True)
    assert exc.value.reason_code == "missing_isa"
