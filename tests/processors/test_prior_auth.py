"""Prior authorization (issue 11): rules as data, detection, per-criterion evidence, drafts, responses.

Table-driven over the shipped rules (rules/prior_auth) and small patient contexts built with
the real fold (processors/context/snapshot.apply)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from practiceflow.jobs.rules_check import RULE_MODELS
from practiceflow.processors.context import snapshot as snap
from practiceflow.processors.rules import RuleError
from practiceflow.processors.workflows.decisions import decide
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
from practiceflow.processors.workflows.workitem import QUEUES, apply_decision
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
    from practiceflow.processors.workflows.prior_auth.step import trusted_fax_decision

    fax = {"doc_class": "prior_auth_response", "kind": "pa.approved", "abstained": False, "misdirected": False}
    fax.update({"extractor": "rules", "needs_human_read": False}, **changes)
    assert trusted_fax_decision(fax) is trusted


# ------------------------------------------------------------------------- sign-off follow-up (review M3)
def _decision(item: dict, option: str, decision_id: str = "dec-pa-1", **kw: Any) -> dict:
    return {
        "practice_id": P,
        "decision_id": decision_id,
        "item_id": item["item_id"],
        "item_revision": item["revision"],
        "option": option,
        "actor": "dr-lee",
        "actor_role": "clinician",
        "decided_at": NOW + 60_000,
        **kw,
    }


def test_signing_a_prior_auth_opens_a_billing_item_to_submit_it():
    """Approving "sign the drafts" used to close the item and nothing else: no submission, nobody told."""
    c, o = pap_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    (item,) = d.result.work_items
    labels = {opt["option"]: opt["label"] for opt in item["options"]}
    assert "and submit" not in labels["approve"] and "billing office submits" in labels["approve"]  # honest label
    for opt in ("approve", "edit"):
        edits = {"body": "amended letter"} if opt == "edit" else {}
        result = decide(item, _decision(item, opt, edits=edits))
        signed, submit = result.work_items
        assert signed["item_id"] == item["item_id"] and signed["state"] == "done"
        assert submit["queue"] == "billing" and submit["kind"] == "prior_auth.submit" and submit["state"] == "open"
        assert submit["queue"] in QUEUES
        assert submit["title"] == "Submit the signed prior-authorization request to Acme Health"
        # an edited letter replaces the drafted one (review s19 M2); PAS and 278 are handed over as drafted
        signed_ids = item["draft_ids"] if opt == "approve" else [*item["draft_ids"][:2], result.drafts[0]["draft_id"]]
        assert item["draft_ids"] == [dr["draft_id"] for dr in d.result.drafts]
        assert submit["draft_ids"] == signed_ids and len(result.drafts) == (0 if opt == "approve" else 1)
        keys = {e["record_key"] for e in submit["evidence"]}
        assert set(signed_ids) | {d.state["authorization_id"]} <= keys
        assert d.state["authorization_id"] in submit["what_happened"]
        assert {e["value"] for e in submit["evidence"] if e["record_type"] == "Draft"} == {
            "fhir.Bundle.pas",
            "x12.278",
            "letter.medical_necessity",
        }
        assert submit["patient_id"] == item["patient_id"] and submit["practice_id"] == P
        assert any(a.action == "prior_auth_submission_requested" for a in result.audit)
    # idempotent by decision id: the same decision yields the same item; a replay on the signed item nothing
    again = decide(item, _decision(item, "approve"))
    assert again.work_items[1]["item_id"] == decide(item, _decision(item, "approve")).work_items[1]["item_id"]
    assert again.work_items[1]["item_id"] != decide(item, _decision(item, "approve", "dec-2")).work_items[1]["item_id"]
    assert decide(again.work_items[0], _decision(item, "approve")).work_items == ()
    # deciding the billing item itself opens nothing further
    submit = again.work_items[1]
    assert decide(submit, _decision(submit, "approve", "dec-3", actor_role="billing")).work_items[1:] == ()


def test_an_edited_letter_is_what_billing_gets_to_submit():
    """Review s19 M2: with criteria open only edit / reject is offered, but the edit stayed in the decision;
    the submit item handed over the drafted PDF (no necessity statement, internal labels) as "signed"."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    (item,) = d.result.work_items
    assert [x["option"] for x in item["options"]] == ["edit", "reject"]
    body = (
        "Acme Health - prior authorization\nRe: MRI lumbar spine\n\nSix weeks of physical therapy failed.\n"
        "The MRI is medically necessary.\n\nSincerely,\nDr Lee"
    )
    result = decide(item, _decision(item, "edit", edits={"body": body}))
    signed, submit = result.work_items
    assert signed["state"] == "done" and submit["kind"] == "prior_auth.submit"
    (new,) = result.drafts
    original = d.result.drafts[2]
    assert new["kind"] == "letter.medical_necessity" and new["content_type"] == "application/pdf"
    assert new["draft_id"] != original["draft_id"] and new["status"] == "approved" and new["practice_id"] == P
    # the submit item points at the edited letter, never the drafted one
    assert new["draft_id"] in submit["draft_ids"] and original["draft_id"] not in submit["draft_ids"]
    assert submit["draft_ids"][:2] == item["draft_ids"][:2]
    # the PDF is the edited text, without the checker's labels
    text = _letter_text(SimpleNamespace(result=SimpleNamespace(drafts=[new])))
    assert b"physical therapy failed" in text and b"medically necessary" in text
    assert b"INSUFFICIENT" not in text and b"NOT MET" not in text
    # and the text itself travels on the item, named as what to submit
    (ev,) = [e for e in submit["evidence"] if e["record_key"] == new["draft_id"] and "submit this text" in e["label"]]
    assert ev["excerpt"] == body
    assert new["draft_id"] in submit["what_happened"]
    # replay-stable: the same decision renders the same draft (bytes and id); another decision another id
    assert decide(item, _decision(item, "edit", edits={"body": body})).drafts == result.drafts
    other = decide(item, _decision(item, "edit", "dec-pa-2", edits={"body": body})).drafts[0]
    assert other["draft_id"] != new["draft_id"]
    # an edit without letter text hands over the drafted letter and says so
    plain = decide(item, _decision(item, "edit", edits={"comment": "ok"}))
    assert plain.drafts == () and plain.work_items[1]["draft_ids"] == item["draft_ids"]
    assert "left the letter as drafted" in plain.work_items[1]["what_happened"]


def test_the_drafted_letter_carries_no_internal_labels():
    """Review s19 M2: the letter listed each criterion as "[INSUFFICIENT INFORMATION]" / "[NOT MET]" to the payer."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert {r.status for r in d.results} >= {"insufficient", "met"}
    pdf = _letter_text(d)
    assert b"Criteria and" in pdf
    for internal in (b"INSUFFICIENT", b"NOT MET", b"[met]", b"attach it", b"is on record"):
        assert internal not in pdf, internal
    # the labels stay in the item's evidence for the clinician
    heads = [e["label"] for e in d.result.work_items[0]["evidence"] if e["label"].startswith("criterion ")]
    assert any(h.endswith("INSUFFICIENT INFORMATION") for h in heads)


def test_rejecting_or_a_non_clinician_opens_no_submission_item():
    c, o = pap_case()
    (item,) = draft(PriorAuthContext(c), "Order", o, RULES, NOW).result.work_items
    rejected = decide(item, _decision(item, "reject"))
    assert [i["item_id"] for i in rejected.work_items] == [item["item_id"]]
    assert rejected.work_items[0]["state"] == "rejected"
    assert decide(item, _decision(item, "approve", actor_role="front_desk")).work_items == ()  # refused


# ------------------------------------------------------------------------- review s18 S6 / S15 / S8
def _fax(decision: str = "approved", reference: str | None = None, cid: str = "fx1", **kw: Any) -> dict[str, Any]:
    extracted = [{"field": "decision", "value": decision, "page": 1, "start": 0, "end": 3, "source": "rules"}]
    if reference:
        extracted.append(
            {"field": "reference", "value": reference, "page": 1, "start": 9, "end": 20, "source": "rules"}
        )
    fax = {
        "practice_id": P,
        "classification_id": cid,
        "doc_class": "prior_auth_response",
        "kind": f"pa.{decision}",
        "abstained": False,
        "misdirected": False,
        "needs_human_read": False,
        "extractor": "rules",
        "patient_match": "matched",
        "patient_id": PT,
        "pages": [1],
        "storage_uri": "file:///fax/fx1.pdf",
        "extracted": extracted,
        "source": SRC,
    }
    fax.update(kw)
    return fax


def _signed(d) -> dict:
    return apply_decision(
        d.result.work_items[0],
        {
            "decision_id": "dec1",
            "option": "edit",
            "actor": "dr",
            "decided_at": NOW + 10,
            "practice_id": P,
            "item_id": d.state["item_id"],
        },  # type: ignore[typeddict-item]
    )


@pytest.mark.parametrize(
    ("fax_kw", "why"),
    [
        ({}, "it names no reference"),  # trusted, but the patient's only open request is a guess
        ({"reference": "WRONG-1"}, "it names no reference"),  # another request's number
        ({"reference": "AID", "abstained": True}, "not read reliably"),
        ({"reference": "AID", "extractor": "rules+llm"}, "not read reliably"),  # an LLM relabel (S18)
        ({"reference": "AID", "needs_human_read": True}, "not read reliably"),
    ],
)
def test_an_unmatched_or_untrusted_faxed_decision_is_evidence_and_never_moves_the_authorization(fax_kw, why):
    """Review s18 S6: a faxed "approved" set the patient's only open authorization to approved and
    replaced the clinician's options, whatever the fax named or however it was read."""
    from practiceflow.processors.workflows.prior_auth.step import on_fax_decision

    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    signed = _signed(d)
    kw = dict(fax_kw)
    if kw.get("reference") == "AID":
        kw["reference"] = d.state["authorization_id"]
    result, st = on_fax_decision(d.state, _fax(**kw), signed, NOW + 1000)
    assert st["status"] == "drafted" and st["authorization_number"] is None
    assert result.work_items == ()  # the signed item stays closed; the fax's own billing item has it
    (audit,) = result.audit
    assert audit.action == "prior_auth_fax_unconfirmed" and why in audit.reason
    # on the open sign-off item: a revision with the fax first in the evidence, options kept
    result, st = on_fax_decision(d.state, _fax(**kw), None, NOW + 1000)
    (item,) = result.work_items
    assert item["item_id"] == d.state["item_id"] and item["kind"] == "prior_auth.sign_off"
    assert item["options"] == d.result.work_items[0]["options"] and item["revision"] == 2
    head = item["evidence"][0]
    assert head["assessment"] == "unconfirmed" and head["record_type"] == "FaxClassification"
    assert head["document_uri"] == "file:///fax/fx1.pdf" and st["status"] == "drafted"
    again, _ = on_fax_decision(st, _fax(**kw), item, NOW + 2000)
    assert again.empty  # a replayed fax changes nothing


def test_a_trusted_fax_naming_the_request_moves_it_only_once_signed():
    from practiceflow.processors.workflows.prior_auth.step import on_fax_decision

    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    fax = _fax("approved", reference=d.state["authorization_id"].upper())
    # not signed yet: nothing was submitted, so the sign-off options stay (evidence only)
    result, st = on_fax_decision(d.state, fax, None, NOW + 1000)
    assert st["status"] == "drafted" and result.work_items[0]["kind"] == "prior_auth.sign_off"
    # signed: the trusted fax naming our request id is the payer's answer
    result, st = on_fax_decision(d.state, fax, _signed(d), NOW + 1000)
    assert st["status"] == "approved" and result.work_items[0]["kind"] == "prior_auth.approved"
    # the payer's number already on file (a pended 278 gave it) also names the request
    pended, st2 = respond(d.state, resp("pended", number="CASE-77"), _signed(d), NOW + 500)
    result, st3 = on_fax_decision(st2, _fax("denied", reference="case 77", cid="fx2"), pended.work_items[0], NOW + 900)
    assert st3["status"] == "denied"


def _cancelled(o: dict[str, Any]) -> dict[str, Any]:
    return {**o, "control": "CA", "status": "CA"}


def test_a_cancelled_order_supersedes_its_open_sign_off_item_and_cancels_the_authorization():
    """Review s18 S15: ORM^O01 CA after the NW left "sign the drafts" open for an order that no longer exists."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    out = draft(PriorAuthContext(c, d.state), "Order", _cancelled(o), RULES, NOW + 5000)
    (item,) = out.result.work_items
    assert item["item_id"] == d.state["item_id"] and item["state"] == "superseded" and item["revision"] == 2
    assert item["outcome"] == "order cancelled"
    assert out.state is not None and out.state["status"] == "cancelled"
    assert [a.action for a in out.result.audit] == ["prior_auth_cancelled"]
    # a completed order (performed) is not a cancelled one: nothing is superseded
    done = draft(PriorAuthContext(c, d.state), "Order", {**o, "status": "completed"}, RULES, NOW + 5000)
    assert done.result.empty and done.state is None
    # the order re-sent (or cancelled again) changes nothing now
    assert draft(PriorAuthContext(c, out.state), "Order", o, RULES, NOW + 6000).result.empty
    assert draft(PriorAuthContext(c, out.state), "Order", _cancelled(o), RULES, NOW + 6000).result.empty


def test_a_cancelled_order_after_sign_off_asks_billing_to_withdraw_the_request():
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    signed = _signed(d)
    out = draft(PriorAuthContext(c, d.state, item=signed), "Order", _cancelled(o), RULES, NOW + 5000)
    (item,) = out.result.work_items
    assert item["item_id"] != d.state["item_id"] and item["queue"] == "billing" and item["state"] == "open"
    assert item["kind"] == "prior_auth.cancelled" and d.state["authorization_id"] in item["what_happened"]
    assert out.state is not None and out.state["status"] == "cancelled"


def test_a_failed_check_is_a_triage_item_with_ids_only():
    """Review s18 S8: a failing step was an audit event only; nobody reads the audit trail as a queue."""
    from practiceflow.processors.workflows.prior_auth.step import failed_check_item

    _c, o = mri_case()
    item = failed_check_item(P, PT, "Order", {**o, "ordering_provider": "Smith, Jo"}, "KeyError", NOW)
    assert item["queue"] == "triage" and item["kind"] == "prior_auth.check_failed" and item["state"] == "open"
    assert item["subject_id"] == "ord-mri" and item["patient_id"] == PT and "KeyError" in item["what_happened"]
    assert "Smith" not in json.dumps(item) and "Doe" not in json.dumps(item)
    assert failed_check_item(P, PT, "Order", o, "KeyError", NOW) == failed_check_item(
        P, PT, "Order", o, "KeyError", NOW
    )


def test_a_rule_read_fax_naming_the_orders_procedure_code_names_the_request():
    """The fax extractor reads a payer decision's CPT / HCPCS code; it names the request as its reference would."""
    from practiceflow.processors.workflows.fax.extract import RuleExtractor
    from practiceflow.processors.workflows.prior_auth.step import fax_matches

    page = (
        "PRIOR AUTHORIZATION DETERMINATION\nPlan: Acme Health\nMember ID: W123\n"
        "Procedure code: 72148 MRI lumbar spine\nReference number: ACME-55321\nDecision: APPROVED\n"
    )
    found = RuleExtractor().extract("prior_auth_response", [page], [1])
    assert {e.field: e.value for e in found}["procedure_code"] == "72148"
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    extracted = [{"field": e.field, "value": e.value} for e in found]
    assert fax_matches(d.state, {"extracted": extracted})
    other = [e for e in extracted if e["field"] != "procedure_code"]
    assert not fax_matches(d.state, {"extracted": other})  # the payer's own number is not ours


def test_an_orm_o01_ca_after_the_nw_supersedes_the_sign_off_item():
    """Review s18 S15, through the HL7 normalizer: the sample day's MRI order (NW), then its cancel (CA)."""
    from datetime import date

    from practiceflow.processors.hl7.normalize import normalize_hl7
    from practiceflow.sampleday import prior_auth as spa
    from practiceflow.sampleday.people import make_people

    person = spa.patients(make_people(40, 7))[0]
    msgs = spa.history(person, 0, date(2026, 11, 27), iter(range(700001, 799999)))
    ctx, orders = None, []
    for raw in msgs:
        for rec in normalize_hl7(raw, P, NOW).records:
            if ctx is None and rec.value.get("patient_id"):
                ctx = snap.empty(P, rec.value["patient_id"])
            if ctx is not None and rec.value.get("patient_id") == ctx.patient_id:
                ctx = snap.apply(ctx, rec.record_type, rec.value)
            if rec.record_type == "Order" and rec.value["order_id"] == spa.order_id(0):
                orders.append(rec.value)
    assert ctx is not None and len(orders) == 1
    d = draft(PriorAuthContext(ctx), "Order", orders[0], RULES, NOW)
    assert d.state is not None and d.result.work_items[0]["kind"] == "prior_auth.sign_off"
    cancel = msgs[-1].replace(b"ORC|NW|", b"ORC|CA|").replace(b"|P700", b"|C700")
    (ca,) = [r.value for r in normalize_hl7(cancel, P, NOW + 60_000).records if r.record_type == "Order"]
    assert ca["order_id"] == spa.order_id(0) and ca["control"] == "CA"
    out = draft(PriorAuthContext(ctx, d.state), "Order", ca, RULES, NOW + 60_000)
    (item,) = out.result.work_items
    assert item["item_id"] == d.state["item_id"] and item["state"] == "superseded"
    assert out.state is not None and out.state["status"] == "cancelled"
