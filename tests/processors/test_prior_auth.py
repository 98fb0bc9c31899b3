"""Prior authorization (issue 11): rules as data, detection, per-criterion evidence, drafts, responses.

Table-driven over the shipped rules (rules/prior_auth) and small patient contexts built with
the real fold (processors/context/snapshot.apply)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from practiceflow.jobs.rules_check import RULE_MODELS
from practiceflow.processors.context import snapshot as snap
from practiceflow.processors.rules import RuleError
from practiceflow.processors.workflows.prior_auth import letter
from practiceflow.processors.workflows.prior_auth.codes import check
from practiceflow.processors.workflows.prior_auth.detect import detect
from practiceflow.processors.workflows.prior_auth.evidence import STATUSES, assess
from practiceflow.processors.workflows.prior_auth.rules import load_prior_auth_rules
from practiceflow.processors.workflows.prior_auth.step import (
    PriorAuthContext,
    authorization_id,
    draft,
    respond,
)
from practiceflow.processors.workflows.step import as_dict
from practiceflow.processors.workflows.workitem import apply_decision
from practiceflow.processors.x12.x278 import read_278

P, PT = "clinic-a", "MRN100"
SRC = {"feed": "hl7v2", "message_id": "m-1"}
NOW = 1_772_400_000_000  # 2026-03-01T21:20Z
RULES = load_prior_auth_rules()


def ctx_with(*records: tuple[str, dict[str, Any]], coverage: bool = True) -> snap.PatientContext:
    c = snap.empty(P, PT)
    base = [
        (
            "Patient",
            {"patient_id": PT, "family_name": "Doe", "given_names": ["Ann"], "birth_date": "1970-02-03", "sex": "F"},
        ),
    ]
    if coverage:
        base.append(
            (
                "Coverage",
                {
                    "coverage_id": "cov1",
                    "payer_id": "ACME01",
                    "payer_name": "Acme Health",
                    "member_id": "W123",
                    "plan_name": "Acme PPO",
                },
            )
        )
    for rt, rec in [*base, *records]:
        c = snap.apply(c, rt, {"practice_id": P, "patient_id": PT, "source": SRC, **rec})
    return c


def order(code: str, display: str = "", oid: str = "o1", dx: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    return {
        "practice_id": P,
        "patient_id": PT,
        "order_id": oid,
        "code": {"system": "CPT4", "code": code, "display": display or code},
        "ordered_at": "2026-03-01T10:00:00",
        "ordering_provider": "Smith, Jo (1234567893)",
        "diagnoses": [{"system": "I10", "code": d} for d in dx],
        "source": SRC,
        **kw,
    }


def med(oid: str, code: str, display: str, written: str, status: str = "active") -> tuple[str, dict[str, Any]]:
    return (
        "MedicationOrder",
        {"order_id": oid, "medication": {"code": code, "display": display}, "written_at": written, "status": status},
    )


# ------------------------------------------------------------------------------------------- rules
def test_rules_load_and_are_registered_for_rules_check():
    assert RULE_MODELS["prior_auth"].endswith(":PriorAuthRule")
    assert len(RULES.payer_rules) >= 6
    for r in RULES.payer_rules:
        assert r.source and r.version
        if r.needs_auth:
            cset = RULES.criteria_for(r)
            for c in cset.criteria:
                assert c.id and c.version and c.source and c.satisfy
    topics = {r.category for r in RULES.payer_rules}
    assert {"advanced_imaging", "sleep_study", "dme", "home_oxygen", "specialty_drug"} <= topics


def test_a_practice_rule_overrides_and_a_bad_one_is_refused(tmp_path: Path):
    d = tmp_path / "prior_auth"
    d.mkdir()
    (d / "mine.yaml").write_text(
        "rules:\n"
        "  - {id: prior_auth.payer.acme.mri_exempt, version: '1', kind: payer_rule, category: advanced_imaging,\n"
        "     payers: [ACME01], codes: ['72148'], needs_auth: false, source: 'Acme provider manual 2026'}\n"
    )
    rules = load_prior_auth_rules(tmp_path)
    assert rules.match(codes=["72148"], payer=["ACME01"]).id == "prior_auth.payer.acme.mri_exempt"
    assert rules.match(codes=["72148"], payer=["OTHER"]).id == "prior_auth.payer.any.mri_lumbar"
    (d / "bad.yaml").write_text("rules:\n  - {id: x.y, version: '1', kind: payer_rule, codes: ['1'], source: s}\n")
    with pytest.raises(RuleError, match="criteria_set"):
        load_prior_auth_rules(tmp_path)


# ------------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("rt", "rec", "expected"),
    [
        ("Order", order("72148", "MRI lumbar spine"), "prior_auth.payer.any.mri_lumbar"),
        ("Order", order("74177", "CT abd/pelvis"), "prior_auth.payer.any.ct"),
        ("Order", order("74177", "CT abd/pelvis", place_of_service="23"), None),  # ED: exempt rule wins
        ("Order", order("95810", "Polysomnography"), "prior_auth.payer.any.sleep_study"),
        ("Order", order("E0601", "CPAP device"), "prior_auth.payer.any.pap_device"),
        ("Order", order("E1390", "Oxygen concentrator"), "prior_auth.payer.any.home_oxygen"),
        ("Order", order("85025", "CBC"), None),  # no rule names it
        ("Order", order("72148", "MRI", control="CA"), None),  # cancelled
        (
            "MedicationOrder",
            {**med("rx9", "327361", "adalimumab 40 MG pen", "2026-03-01")[1], "practice_id": P, "patient_id": PT},
            "prior_auth.payer.any.tnf_inhibitor",
        ),
        (
            "MedicationOrder",
            {**med("rx9", "999", "HUMIRA pen", "2026-03-01")[1], "practice_id": P, "patient_id": PT},
            "prior_auth.payer.any.tnf_inhibitor",
        ),
        (
            "MedicationOrder",
            {**med("rx9", "197361", "amlodipine 5 mg", "2026-03-01")[1], "practice_id": P, "patient_id": PT},
            None,
        ),
    ],
)
def test_detect(rt, rec, expected):
    need = detect(ctx_with(), rt, rec, RULES)
    assert (need.rule.id if need else None) == expected


def test_detect_without_coverage_still_applies_any_payer_rules():
    need = detect(ctx_with(coverage=False), "Order", order("72148"), RULES)
    assert need is not None and need.coverage is None


# ------------------------------------------------------------------------------------------- evidence
def crit(set_id: str, cid: str):
    return next(c for c in RULES.criteria_sets[set_id].criteria if c.id == cid)


MRI = "prior_auth.criteria.mri_lumbar_spine"
O2 = "prior_auth.criteria.home_oxygen"
TNF = "prior_auth.criteria.tnf_inhibitor"
COND = "Condition"


def cond(code: str, cid: str = "c1") -> tuple[str, dict[str, Any]]:
    return (COND, {"condition_id": cid, "code": {"system": "I10", "code": code}, "clinical_status": "active"})


def obs(code: str, value: float, when: str, display: str = "") -> tuple[str, dict[str, Any]]:
    return (
        "Observation",
        {
            "observation_id": f"ob-{code}-{when}",
            "code": {"code": code, "display": display or code},
            "value": str(value),
            "value_numeric": value,
            "units": "%",
            "effective_at": when,
        },
    )


@pytest.mark.parametrize(
    ("set_id", "cid", "records", "dx", "status"),
    [
        (MRI, "mri_lumbar.diagnosis", [cond("M54.16")], (), "met"),
        (MRI, "mri_lumbar.diagnosis", [], ("M5416",), "met"),
        (MRI, "mri_lumbar.diagnosis", [cond("J45.909")], (), "not_met"),  # coded, but not a back diagnosis
        (MRI, "mri_lumbar.diagnosis", [], (), "insufficient"),
        (MRI, "mri_lumbar.diagnosis", [cond("M54.1")], (), "insufficient"),  # a category, not billable
        (MRI, "mri_lumbar.diagnosis", [cond("M54.99")], (), "insufficient"),  # not in the code set
        (MRI, "mri_lumbar.conservative_therapy", [med("r1", "5640", "ibuprofen 600 mg", "2026-01-02")], (), "met"),
        (MRI, "mri_lumbar.conservative_therapy", [med("r1", "5640", "ibuprofen 600 mg", "2026-02-20")], (), "not_met"),
        (
            MRI,
            "mri_lumbar.conservative_therapy",
            [("Order", {"order_id": "pt", "code": {"code": "97110", "display": "PT"}, "ordered_at": "2025-12-01"})],
            (),
            "met",
        ),
        (MRI, "mri_lumbar.conservative_therapy", [], (), "insufficient"),
        (
            MRI,
            "mri_lumbar.prior_imaging",
            [
                (
                    "Order",
                    {"order_id": "xr", "code": {"code": "72100", "display": "XR lumbar"}, "ordered_at": "2025-11-01"},
                )
            ],
            (),
            "met",
        ),
        (
            MRI,
            "mri_lumbar.prior_imaging",
            [
                (
                    "Order",
                    {"order_id": "xr", "code": {"code": "72100", "display": "XR lumbar"}, "ordered_at": "2024-01-01"},
                )
            ],
            (),
            "insufficient",
        ),
        (MRI, "mri_lumbar.failure_documented", [], (), "insufficient"),
        (O2, "o2.saturation", [obs("59408-5", 86, "2026-02-20")], (), "met"),
        (O2, "o2.saturation", [obs("59408-5", 94, "2026-02-20")], (), "not_met"),
        (O2, "o2.saturation", [obs("59408-5", 86, "2025-10-01")], (), "insufficient"),  # older than 30 days
        (O2, "o2.saturation", [obs("LOCAL1", 85, "2026-02-25", "SpO2 at rest")], (), "met"),  # by name
        (O2, "o2.saturation", [], (), "insufficient"),
        (TNF, "tnf.conventional_dmard", [med("m", "6851", "methotrexate 2.5 mg", "2025-09-01", "stopped")], (), "met"),
        (
            TNF,
            "tnf.conventional_dmard",
            [med("m", "6851", "methotrexate 2.5 mg", "2026-02-01", "stopped")],
            (),
            "not_met",
        ),
        (TNF, "tnf.conventional_dmard", [], (), "insufficient"),
        (TNF, "tnf.tb_screening", [obs("X1", 0, "2026-01-15", "QuantiFERON-TB Gold")], (), "met"),
    ],
)
def test_criterion(set_id, cid, records, dx, status):
    from datetime import date

    c = crit(set_id, cid)
    (res,) = assess(ctx_with(*records), order("72148", dx=dx), [c], date(2026, 3, 1))
    assert res.status == status, res.summary
    if status != "insufficient" or records:
        assert res.evidence or c.kind == "documentation", "a decided criterion names the records behind it"


def test_icd10cm_is_checked_against_the_code_set():
    assert check("M54.16").valid and check("M5416").billable
    assert check("M54.1").valid and not check("M54.1").billable
    assert not check("M54.99").valid and not check("ZZZ").valid


# ------------------------------------------------------------------------------------------- the step
def mri_case(**kw: Any):
    c = ctx_with(
        cond("M54.16"),
        med("r1", "5640", "ibuprofen 600 mg", "2026-01-02", "stopped"),
        (
            "Order",
            {"order_id": "pt", "code": {"code": "97110", "display": "Physical therapy"}, "ordered_at": "2026-01-10"},
        ),
    )
    o = order("72148", "MRI lumbar spine w/o contrast", oid="ord-mri", dx=("M5416",), **kw)
    return c, o


def test_order_needing_auth_drafts_pas_278_and_letter_for_the_clinician():
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    (item,) = d.result.work_items
    assert item["queue"] == "clinician" and item["kind"] == "prior_auth.sign_off" and item["state"] == "open"
    # two criteria lack information: no plain approve (review s18 S9)
    assert {opt["option"] for opt in item["options"]} == {"edit", "reject"}
    assert item["produced_by"]["rule_id"] == "prior_auth.payer.any.mri_lumbar"
    kinds = [dr["kind"] for dr in d.result.drafts]
    assert kinds == ["fhir.Bundle.pas", "x12.278", "letter.medical_necessity"]
    assert item["draft_ids"] == [dr["draft_id"] for dr in d.result.drafts]
    assert all(dr["status"] == "draft" for dr in d.result.drafts)
    # per-criterion evidence, not met / insufficient first, each with what would satisfy it
    heads = [e for e in item["evidence"] if e["label"].startswith("criterion ")]
    assert [h["assessment"] for h in heads] == ["insufficient", "insufficient", "met", "met"]
    assert all("Would satisfy" in h["excerpt"] for h in heads if h["assessment"] != "met")
    assert {h["assessment"] for h in heads} <= set(STATUSES)  # never "deny"
    # PAS bundle: valid FHIR, a preauthorization Claim first, one supportingInfo per criterion
    bundle = json.loads(d.result.drafts[0]["body"])
    Bundle.model_validate(bundle)
    claim = bundle["entry"][0]["resource"]
    assert claim["resourceType"] == "Claim" and claim["use"] == "preauthorization"
    assert len(claim["supportingInfo"]) == 4
    assert claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "M54.16"
    assert claim["item"][0]["productOrService"]["coding"][0]["code"] == "72148"
    # 278: read back with the project's tokenizer
    (r,) = read_278(d.result.drafts[1]["body"])
    assert r.purpose == "13" and r.traces == (d.state["authorization_id"],)
    assert (r.member_id, r.payer_id, r.requester_npi) == ("W123", "ACME01", "1234567893")
    assert r.diagnoses == ("M5416",) and r.procedures == ("72148",) and r.service_type == "62"
    assert r.place_of_service == "11" and r.birth_date == "1970-02-03"
    # letter: a PDF
    pdf = base64.b64decode(d.result.drafts[2]["body"])
    assert pdf.startswith(b"%PDF-") and d.result.drafts[2]["content_type"] == "application/pdf"
    assert d.state["status"] == "drafted" and d.state["authorization_id"] == authorization_id(P, PT, "ord-mri")
    (audit,) = d.result.audit  # Avro map<string>: every detail a string
    assert all(isinstance(v, str) for v in audit.details.values()) and audit.details["insufficient"] == "2"


def pap_case(**kw: Any):
    """A CPAP order whose every criterion is met (OSA coded, AHI 22 on a sleep test)."""
    c = ctx_with(cond("G47.33"), obs("ahi", 22.0, "2026-02-01T09:00:00", "Apnea-hypopnea index"))
    return c, order("E0601", "CPAP device", oid="ord-pap", dx=("G4733",), **kw)


def _letter_text(d) -> bytes:
    import zlib

    pdf = base64.b64decode(d.result.drafts[-1]["body"])
    out = b""
    for chunk in pdf.split(b"stream")[1:]:
        data = chunk.split(b"endstream")[0].strip(b"\r\n")
        try:
            out += zlib.decompress(data)
        except zlib.error:
            out += data
    return out


def test_with_a_criterion_not_met_no_approve_and_the_letter_claims_nothing_and_hides_the_checklist():
    """Review s18 S9: the letter carried "FOR THE CLINICIAN BEFORE SIGNING" and "medically necessary"
    whatever the criteria said, and "approve" signed it as it stood."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert [x["option"] for x in d.result.work_items[0]["options"]] == ["edit", "reject"]
    assert "edit the letter" in d.result.work_items[0]["decision_needed"]
    text = letter.narrative(
        patient_name="Ann Doe",
        birth_date="1970-02-03",
        member_id="W123",
        payer_name="Acme",
        service="MRI (72148)",
        diagnoses=["M54.16"],
        results=d.results,
        clinician="Smith, Jo",
        practice_name="Clinic",
        date="2026-03-01",
    )
    assert "FOR THE CLINICIAN" not in text and "Would satisfy" not in text and "remove this section" not in text
    assert "medically necessary" not in text
    pdf = _letter_text(d)
    assert b"FOR THE CLINICIAN" not in pdf and b"medically necessary" not in pdf and b"Criteria and" in pdf
    # the to-do list stays with the clinician: in the item's evidence
    assert any("Would satisfy" in (e["excerpt"] or "") for e in d.result.work_items[0]["evidence"])
    # every criterion met: approve is offered and the letter states necessity
    c2, o2 = pap_case()
    d2 = draft(PriorAuthContext(c2), "Order", o2, RULES, NOW)
    assert [x["option"] for x in d2.result.work_items[0]["options"]] == ["approve", "edit", "reject"]
    assert b"medically necessary" in _letter_text(d2)


def test_the_step_is_deterministic():
    c, o = mri_case()
    a = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    b = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert as_dict(a.result) == as_dict(b.result) and a.state == b.state


def test_no_auth_needed_gives_nothing():
    d = draft(PriorAuthContext(ctx_with()), "Order", order("85025"), RULES, NOW)
    assert d.result.empty and d.state is None


def test_a_drug_coded_in_rxnorm_gets_pas_and_letter_but_no_278():
    c = ctx_with(cond("M05.79"), med("m", "6851", "methotrexate 2.5 mg", "2025-06-01", "stopped"))
    rx = {
        **med("rx-h", "327361", "adalimumab 40 MG/0.4ML pen", "2026-03-01")[1],
        "practice_id": P,
        "patient_id": PT,
        "prescriber": "Lee, Kim (1999999984)",
        "source": SRC,
    }
    d = draft(PriorAuthContext(c), "MedicationOrder", rx, RULES, NOW)
    assert [dr["kind"] for dr in d.result.drafts] == ["fhir.Bundle.pas", "letter.medical_necessity"]
    assert "no 278" in d.result.work_items[0]["what_happened"]
    bundle = json.loads(d.result.drafts[0]["body"])
    assert bundle["entry"][-1]["resource"]["resourceType"] == "MedicationRequest"


# ------------------------------------------------------------------------------------------- responses
def resp(decision: str, number: str | None = "AUTH778", rid: str = "r1") -> dict[str, Any]:
    return {
        "response_id": rid,
        "decision": decision,
        "authorization_number": number,
        "action_code": "A1",
        "source": SRC,
    }


@pytest.mark.parametrize(("decision", "state"), [("approved", "approved"), ("pended", "pended"), ("denied", "denied")])
def test_a_response_revises_the_open_item(decision, state):
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    result, new_state = respond(d.state, resp(decision), None, NOW + 1000)
    (item,) = result.work_items
    assert item["item_id"] == d.state["item_id"] and item["revision"] == 2
    assert item["kind"] == f"prior_auth.{state}" and item["state"] == "open" and item["queue"] == "clinician"
    assert item["evidence"][0]["assessment"] == state and "AUTH778" in item["evidence"][0]["excerpt"]
    assert new_state["status"] == state and new_state["authorization_number"] == "AUTH778"
    again, same = respond(new_state, resp(decision), item, NOW + 2000)
    assert again.empty and same["status"] == state  # a replayed response changes nothing


def test_a_response_after_sign_off_opens_a_new_item():
    c, o = pap_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    signed = apply_decision(
        d.result.work_items[0],
        {
            "decision_id": "dec1",
            "option": "approve",
            "actor": "dr",
            "decided_at": NOW + 10,
            "practice_id": P,
            "item_id": d.state["item_id"],
        },  # type: ignore[typeddict-item]
    )
    result, st = respond(d.state, resp("approved"), signed, NOW + 1000)
    (item,) = result.work_items
    assert item["item_id"] != d.state["item_id"] and item["kind"] == "prior_auth.approved" and item["revision"] == 1
    assert st["status"] == "approved"


def _response_278(trns: list[str]) -> str:
    segs = [
        "ISA*00*          *00*          *ZZ*UMO            *ZZ*PRACTICEFLOW   *261201*1200*^*00501*000000007*0*P*:",
        "GS*HI*UMO*PRACTICEFLOW*20261201*1200*7*X*005010X217",
        "ST*278*0001*005010X217",
        "BHT*0007*11*R7*20261201*1200*18",
        "HL*1**20*1",
        "NM1*X3*2*ACME HEALTH*****PI*12345",
        "HL*2*1*21*1",
        "NM1*1P*1*SMITH*ANNA****XX*1234567893",
        "HL*3*2*22*1",
        "NM1*IL*1*DOE*JANE****MI*W100",
        "HL*4*3*EV*0",
        *trns,
        "UM*HS*I*62*11:B",
        "HCR*A1*AUTH1",
    ]
    n = len(segs) - 2 + 1
    return "~\n".join([*segs, f"SE*{n}*0001", "GE*1*7", "IEA*1*000000007"]) + "~\n"


@pytest.mark.parametrize("payer_first", [True, False])
def test_a_278_response_is_matched_by_our_echoed_trace_not_the_payers_own(payer_first: bool):
    """X217: the payer echoes our trace as TRN*2*<ours>*9PRCTFLOW0 and may add its own TRN*1,
    sometimes first; the response must be looked up by ours, or it is parked for ever."""
    from practiceflow.processors.x12.x278 import response_fields

    ours, theirs = "TRN*2*pa-0001-abc*9PRCTFLOW0", "TRN*1*PAYER-TRACE-99*1234567890"
    (r,) = read_278(_response_278([theirs, ours] if payer_first else [ours, theirs]))
    assert response_fields(r)["trace_number"] == "pa-0001-abc"
    assert set(r.traces) == {"pa-0001-abc", "PAYER-TRACE-99"}  # both kept
    assert r.decision == "approved"
    # the same file through the X12 feed's normalizer: the record the prior-auth agent looks up by
    from practiceflow.processors.x12.normalize import normalize_x12

    raw = _response_278([theirs, ours] if payer_first else [ours, theirs]).encode()
    (rec,) = [x for x in normalize_x12(raw, P, NOW).records if x.record_type == "AuthorizationResponse"]
    assert rec.value["trace_number"] == "pa-0001-abc" and rec.value["decision"] == "approved"


@pytest.mark.parametrize(
    ("changes", "trusted"),
    [
        ({}, True),
        ({"abstained": True}, False),  # the classifier was not sure: a person reads it
        ({"misdirected": True}, False),  # addressed to another practice
        ({"needs_human_read": True}, False),  # OCR could not read it reliably
        ({"extractor": "rules+llm"}, False),  # the label or decision came from the language model
    ],
)
def test_only_a_confident_rule_read_fax_decision_updates_an_authorization(changes, trusted):
    from practiceflow.processors.workflows.prior_auth.faxed import trusted_fax_decision

    fax = {"doc_class": "prior_auth_response", "kind": "pa.approved", "abstained": False, "misdirected": False}
    fax.update({"extractor": "rules", "needs_human_read": False}, **changes)
    assert trusted_fax_decision(fax) is trusted
