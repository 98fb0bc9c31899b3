"""Refill triage: table-driven per rule and per drug class, the draft, and property tests.

Contexts are built with the pure fold (processors/context/snapshot.apply) from records in
their normalized (Avro) shape, exactly as the streaming context table builds them.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from hypothesis import HealthCheck, given, settings, strategies as st

from practiceflow.processors.context.snapshot import apply, empty
from practiceflow.processors.workflows.refill.rules import load_refill_rules
from practiceflow.processors.workflows.refill.step import failed_step, refill_step
from practiceflow.processors.workflows.refill.triage import triage

P = "demo-clinic"
NOW = int(datetime(2026, 11, 27, 15, 0, tzinfo=UTC).timestamp() * 1000)
TODAY = date(2026, 11, 27)


@pytest.fixture(scope="module")
def rules():
    return load_refill_rules()


def ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


class Chart:
    """A patient's chart, built record by record through the context fold."""

    def __init__(self, patient: str = "MRN1") -> None:
        self.ctx = empty(P, patient)
        self.patient = patient
        self.n = 0

    def _add(self, rt: str, rec: dict) -> Chart:
        self.n += 1
        rec = {
            "practice_id": P,
            "patient_id": self.patient,
            "source": {"feed": "hl7v2", "message_id": f"m{self.n}"},
        } | rec
        self.ctx = apply(self.ctx, rt, rec)
        return self

    def visit(self, days: int, status: str = "finished", provider: str = "Okafor, Grace") -> Chart:
        return self._add(
            "Encounter",
            {
                "encounter_id": f"V{self.n}",
                "status": status,
                "attending_provider": provider,
                "admit_at": f"{ago(days)}T09:00:00",
                "discharge_at": f"{ago(days)}T09:30:00",
            },
        )

    def lab(self, loinc: str, value: float, days: int, flags: tuple[str, ...] = ("N",), status: str = "F") -> Chart:
        return self._add(
            "Observation",
            {
                "observation_id": f"O{self.n}",
                "code": {"system": "LN", "code": loinc, "display": loinc},
                "value": f"{value:g}",
                "value_numeric": value,
                "units": "u",
                "reference_range": None,
                "abnormal_flags": list(flags),
                "status": status,
                "effective_at": f"{ago(days)}T08:00:00",
            },
        )

    def bp(self, sys_: int, dia: int, days: int = 30) -> Chart:
        return self.lab("8480-6", sys_, days, ()).lab("8462-4", dia, days, ())

    def order(self, display: str, code: str | None = None, status: str = "NW", refills: int = 0) -> Chart:
        return self._add(
            "MedicationOrder",
            {
                "order_id": f"RX{self.n}",
                "medication": {"system": "RXNORM", "code": code, "display": display},
                "dose": "1",
                "dose_units": "TAB",
                "frequency": "QD",
                "quantity": "30 TAB",
                "refills": refills,
                "prescriber": "Okafor, Grace",
                "status": status,
                "written_at": ago(200),
                "instructions": "Take 1 tablet by mouth daily",
            },
        )


def request(name: str, code: str | None = None, patient: str = "MRN1", rid: str = "rfl_1") -> dict:
    return {
        "practice_id": P,
        "request_id": rid,
        "patient_id": patient,
        "medication": name,
        "medication_code": code,
        "pharmacy": None,
        "last_filled": ago(28),
        "note": None,
        "submitted_at": NOW,
        "source": {"feed": "portal", "message_id": f"refill.requested/{rid}"},
    }


# a complete chart per drug class: (order display, request name, chart builder)
def ace(c: Chart) -> Chart:
    return (
        c.visit(100)
        .lab("2823-3", 4.4, 60)
        .lab("2160-0", 0.9, 60)
        .bp(128, 78)
        .order("lisinopril 10 MG Oral Tablet", "314076")
    )


def statin(c: Chart) -> Chart:
    return c.visit(100).lab("13457-7", 88, 120).order("atorvastatin 20 MG Oral Tablet")


def metformin(c: Chart) -> Chart:
    return c.visit(100).lab("4548-4", 7.2, 90, ("H",)).lab("62238-1", 70, 90, ()).order("metformin 500 MG Oral Tablet")


def levo(c: Chart) -> Chart:
    return c.visit(200).lab("3016-3", 2.1, 150).order("levothyroxine 50 MCG Oral Tablet")


def warfarin(c: Chart) -> Chart:
    return c.visit(60).lab("6301-6", 2.5, 14).order("warfarin 5 MG Oral Tablet")


def amlodipine(c: Chart) -> Chart:
    return c.visit(90).bp(132, 84).order("amlodipine 5 MG Oral Tablet", "197361")


CLASSES = {
    "ace_arb": (ace, "lisinopril 10 mg tablet", "refill.ace_arb"),
    "statin": (statin, "Lipitor 20mg", "refill.statin"),
    "metformin": (metformin, "metformin hydrochloride 500 mg", "refill.metformin"),
    "levothyroxine": (levo, "Synthroid 50 mcg", "refill.levothyroxine"),
    "warfarin": (warfarin, "Coumadin 5 mg", "refill.warfarin"),
    "antihypertensive": (amlodipine, "Norvasc 5 mg", "refill.antihypertensive"),
}


@pytest.mark.parametrize("drug_class", sorted(CLASSES))
def test_complete_chart_is_routine_with_draft_per_class(rules, drug_class):
    build, name, rule_id = CLASSES[drug_class]
    ctx = build(Chart()).ctx
    res = refill_step(ctx, request(name), rules, NOW)
    item = res.work_items[0]
    assert item["kind"] == "refill.routine", item["evidence"]
    assert item["produced_by"]["rule_id"] == rule_id and item["produced_by"]["rule_version"] == "1"
    assert item["queue"] == "clinician" and item["state"] == "open"
    assert {o["option"] for o in item["options"]} == {"approve", "edit", "reject"}
    # the draft: a validated FHIR MedicationRequest in status draft, linked from the item
    (draft,) = res.drafts
    assert item["draft_ids"] == [draft["draft_id"]] and draft["item_id"] == item["item_id"]
    mr = MedicationRequest.model_validate(json.loads(draft["body"]))
    assert mr.status == "draft" and mr.intent == "order"
    assert mr.priorPrescription.identifier.value.startswith("RX")
    # evidence: the visit, the order, every required monitoring value - all met
    assessments = {e["label"]: e["assessment"] for e in item["evidence"]}
    assert assessments["last completed visit"] == "met"
    assert assessments["medication order"] == "met"
    rule = rules.by_class[drug_class]
    for m in (*rule.labs, *rule.vitals):
        assert assessments[m.name] == "met"
        ev = next(e for e in item["evidence"] if e["label"] == m.name)
        assert ev["record_type"] == "Observation" and ev["observed_at"] and ev["value"]


def _class(rules, ctx, name, code=None):
    return triage(request(name, code), ctx, rules, NOW)


# (case, chart, request, expected class, a reason that must be there)
CASES = [
    # ACE inhibitor / ARB: K + creatinine/eGFR 12 months, BP, visit
    ("ace K high", lambda c: c.visit(100).lab("2823-3", 5.6, 30, ("H",)).lab("2160-0", 1.0, 30).bp(120, 80).order("lisinopril 10 MG Oral Tablet"), "lisinopril 10 mg", "needs_review", "lab_abnormal"),
    ("ace K missing", lambda c: c.visit(100).lab("2160-0", 1.0, 30).bp(120, 80).order("lisinopril 10 MG Oral Tablet"), "lisinopril 10 mg", "needs_review", "lab_missing"),
    ("ace K 13 months", lambda c: c.visit(100).lab("2823-3", 4.2, 400).lab("2160-0", 1.0, 30).bp(120, 80).order("lisinopril 10 MG Oral Tablet"), "lisinopril", "needs_review", "lab_stale"),
    ("ace eGFR counts for renal", lambda c: c.visit(100).lab("2823-3", 4.2, 30).lab("33914-3", 75, 30, ()).bp(120, 80).order("losartan 50 MG Oral Tablet"), "Cozaar 50 mg", "routine", None),
    ("ace no BP", lambda c: c.visit(100).lab("2823-3", 4.2, 30).lab("2160-0", 1.0, 30).order("lisinopril 10 MG Oral Tablet"), "lisinopril", "needs_review", "vital_missing"),
    ("ace BP 172/104", lambda c: c.visit(100).lab("2823-3", 4.2, 30).lab("2160-0", 1.0, 30).bp(172, 104).order("lisinopril 10 MG Oral Tablet"), "lisinopril", "needs_review", "vital_abnormal"),
    # statins
    ("statin no lipids", lambda c: c.visit(100).order("atorvastatin 20 MG Oral Tablet"), "atorvastatin 20 mg", "needs_review", "lab_missing"),
    ("statin LDL flagged H", lambda c: c.visit(100).lab("13457-7", 190, 30, ("H",)).order("atorvastatin 20 MG Oral Tablet"), "atorvastatin", "needs_review", "lab_abnormal"),
    # metformin: A1c 6 months, eGFR, reassess < 45
    ("metformin A1c 7 months", lambda c: c.visit(100).lab("4548-4", 7.0, 215).lab("62238-1", 70, 30, ()).order("metformin 500 MG Oral Tablet"), "metformin", "needs_review", "lab_stale"),
    ("metformin eGFR 40", lambda c: c.visit(100).lab("4548-4", 7.0, 30).lab("62238-1", 40, 30, ("L",)).order("metformin 500 MG Oral Tablet"), "metformin", "needs_review", "lab_abnormal"),
    ("metformin A1c 10", lambda c: c.visit(100).lab("4548-4", 10.1, 30, ("H",)).lab("62238-1", 70, 30).order("metformin 500 MG Oral Tablet"), "metformin", "needs_review", "lab_abnormal"),
    ("metformin creatinine only", lambda c: c.visit(100).lab("4548-4", 7.0, 30).lab("2160-0", 1.0, 30).order("metformin 500 MG Oral Tablet"), "metformin", "needs_review", "lab_missing"),
    # levothyroxine
    ("levo TSH 14", lambda c: c.visit(100).lab("3016-3", 14.0, 30, ("H",)).order("levothyroxine 50 MCG Oral Tablet"), "levothyroxine 50 mcg", "needs_review", "lab_abnormal"),
    ("levo TSH preliminary", lambda c: c.visit(100).lab("3016-3", 2.0, 30, status="P").order("levothyroxine 50 MCG Oral Tablet"), "levothyroxine", "needs_review", "lab_not_final"),
    ("levo 0.05 mg == 50 mcg", lambda c: c.visit(100).lab("3016-3", 2.0, 30).order("levothyroxine 0.05 MG Oral Tablet"), "levothyroxine 50 mcg", "routine", None),
    # warfarin: INR within 6 weeks and 2-3
    ("warfarin INR 3.6", lambda c: c.visit(60).lab("6301-6", 3.6, 7, ("H",)).order("warfarin 5 MG Oral Tablet"), "warfarin 5 mg", "needs_review", "lab_abnormal"),
    ("warfarin INR 8 weeks old", lambda c: c.visit(60).lab("6301-6", 2.4, 56).order("warfarin 5 MG Oral Tablet"), "warfarin 5 mg", "needs_review", "lab_stale"),
    # antihypertensive: BP
    ("amlodipine no BP", lambda c: c.visit(60).order("amlodipine 5 MG Oral Tablet"), "amlodipine 5 mg", "needs_review", "vital_missing"),
    # every class: a completed visit within the window
    ("no visit", lambda c: c.lab("3016-3", 2.0, 30).order("levothyroxine 50 MCG Oral Tablet"), "levothyroxine", "needs_visit", "no_visit"),
    ("visit 14 months ago", lambda c: c.visit(430).lab("13457-7", 80, 30).order("atorvastatin 20 MG Oral Tablet"), "atorvastatin", "needs_visit", "visit_too_old"),
    ("only a visit in the future", lambda c: c.visit(-10).lab("13457-7", 80, 30).order("atorvastatin 20 MG Oral Tablet"), "atorvastatin", "needs_visit", "no_visit"),
    ("only a cancelled visit", lambda c: c.visit(20, status="cancelled").lab("13457-7", 80, 30).order("atorvastatin 20 MG Oral Tablet"), "atorvastatin", "needs_visit", "no_visit"),
    # the order
    ("other strength", lambda c: c.visit(60).lab("6301-6", 2.5, 7).order("warfarin 5 MG Oral Tablet"), "warfarin 7.5 mg", "needs_review", "strength_mismatch"),
    ("discontinued order", lambda c: c.visit(60).lab("6301-6", 2.5, 7).order("warfarin 5 MG Oral Tablet", status="DC"), "warfarin 5 mg", "needs_review", "order_not_active"),
    ("no order", lambda c: c.visit(60).lab("6301-6", 2.5, 7), "warfarin 5 mg", "needs_review", "no_active_order"),
    ("two strengths, request names none", lambda c: c.visit(60).lab("6301-6", 2.5, 7).order("warfarin 5 MG Oral Tablet").order("warfarin 2 MG Oral Tablet"), "warfarin", "needs_review", "order_ambiguous"),
    # identification
    ("controlled with everything else in order", lambda c: c.visit(20).order("hydrocodone bitartrate 5 MG / acetaminophen 325 MG Oral Tablet"), "Norco 5-325", "needs_review", "controlled_substance"),
    ("tramadol", lambda c: c.visit(20).order("tramadol 50 MG Oral Tablet"), "tramadol 50 mg", "needs_review", "controlled_substance"),
    ("unknown drug", lambda c: c.visit(20), "zyxolam forte", "needs_review", "drug_not_identified"),
    ("no protocol (sertraline)", lambda c: c.visit(20).order("sertraline 50 MG Oral Tablet"), "Zoloft 50 mg", "needs_review", "no_protocol"),
    ("combination product", lambda c: c.visit(20).lab("2823-3", 4.2, 30).lab("2160-0", 1.0, 30).bp(120, 80).order("lisinopril 20 MG / hydrochlorothiazide 12.5 MG Oral Tablet"), "lisinopril-HCTZ 20-12.5", "needs_review", "combination_product"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "build", "name", "expected", "reason"), CASES, ids=[c[0] for c in CASES])
def test_rules_table(rules, case, build, name, expected, reason):
    t = _class(rules, build(Chart()).ctx, name)
    assert t.triage_class == expected, (t.reasons, t.findings)
    if reason:
        assert reason in t.reasons
    else:
        assert not t.reasons


def test_controlled_names_the_schedule_and_the_rule(rules):
    ctx = Chart().visit(20).order("tramadol 50 MG Oral Tablet").ctx
    res = refill_step(ctx, request("Ultram 50mg"), rules, NOW)
    item = res.work_items[0]
    assert item["kind"] == "refill.needs_review" and item["priority"] == "high" and not res.drafts
    assert item["produced_by"]["rule_id"] == "refill.controlled_substance"
    assert any("DEA schedule IV" in (e["excerpt"] or "") for e in item["evidence"])


def test_evidence_names_what_is_missing(rules):
    ctx = Chart().visit(100).lab("2160-0", 1.0, 30).order("lisinopril 10 MG Oral Tablet").ctx
    item = refill_step(ctx, request("lisinopril 10 mg"), rules, NOW).work_items[0]
    missing = next(e for e in item["evidence"] if e["label"] == "missing")
    assert "potassium within 365 days" in missing["excerpt"]
    assert "systolic blood pressure within 365 days" in missing["excerpt"]


def test_same_request_same_item_and_draft(rules):
    ctx = ace(Chart()).ctx
    a = refill_step(ctx, request("lisinopril 10 mg"), rules, NOW)
    b = refill_step(ctx, request("lisinopril 10 mg"), rules, NOW)
    assert a == b
    assert a.work_items[0]["item_id"].startswith("refill:")
    assert "MRN1" not in a.work_items[0]["item_id"]


def test_request_for_another_patient_is_refused(rules):
    with pytest.raises(ValueError, match="another"):
        refill_step(ace(Chart()).ctx, request("lisinopril", patient="MRN2"), rules, NOW)


def test_practice_override_changes_a_window(tmp_path):
    (tmp_path / "refill").mkdir()
    (tmp_path / "refill" / "local.yaml").write_text(
        "rules:\n"
        "  - id: refill.warfarin\n    version: local-2\n    source: our anticoagulation clinic, 2026\n"
        "    drug_class: warfarin\n    title: Warfarin\n    visit_within_days: 365\n"
        "    labs:\n      - {name: INR, loinc: ['6301-6'], within_days: 90, low: 2.0, high: 3.0}\n"
    )
    local = load_refill_rules(tmp_path)
    ctx = Chart().visit(60).lab("6301-6", 2.4, 56).order("warfarin 5 MG Oral Tablet").ctx
    t = triage(request("warfarin 5 mg"), ctx, local, NOW)
    assert t.triage_class == "routine" and t.rule_version == "local-2"


# ------------------------------------------------------------------ properties
_NAMES = st.sampled_from(
    ["lisinopril 10 mg", "Zestril", "atorvastatin 20 mg", "metformin", "Synthroid 50 mcg", "Coumadin 5 mg", "Norvasc"]
)
_CONTROLLED = st.sampled_from(
    [
        "Norco 5-325",
        "hydrocodone/APAP 7.5-325 mg",
        "tramadol 50 mg",
        "Ultram",
        "Xanax 1mg",
        "oxycodone 5 mg",
        "oxycodne",
        "Percocet",
        "Tylenol #3",
        "Adderall",
        "Vyvanse 30 mg",
        "zolpidem",
        "Lyrica",
        "clonazepam",
        "Klonopin 1 mg",
        "methadone 10 mg",
        "fentanyl patch 25 mcg",
        "buprenorphine",
        "Soma 350 mg",
        "phentermine 37.5 mg",
    ]
)
_BUILDERS = st.sampled_from(sorted(CLASSES))


def _full_chart(drug_class: str) -> Chart:
    return CLASSES[drug_class][0](Chart())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    controlled=_CONTROLLED,
    drug_class=_BUILDERS,
    with_order=st.booleans(),
    code=st.sampled_from([None, "5489", "10689"]),
)
def test_property_controlled_is_never_routine(rules, controlled, drug_class, with_order, code):
    chart = _full_chart(drug_class)
    if with_order:
        chart.order(controlled)
    t = triage(request(controlled, code), chart.ctx, rules, NOW)
    assert t.triage_class != "routine"
    assert "controlled_substance" in t.reasons


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drug_class=_BUILDERS, data=st.data())
def test_property_missing_lab_or_abnormal_value_or_no_visit_is_never_routine(rules, drug_class, data):
    rule = rules.by_class[drug_class]
    monitoring = [*rule.labs, *rule.vitals]
    what = data.draw(
        st.sampled_from(["no_visit", "old_visit"] + (["missing", "abnormal", "flagged", "stale"] if monitoring else []))
    )
    c = Chart()
    if what != "no_visit":
        c.visit(rule.visit_within_days + data.draw(st.integers(1, 2000)) if what == "old_visit" else 30)
    target = data.draw(st.sampled_from(monitoring)) if monitoring else None
    for m in monitoring:
        value = ((m.low or 0) + (m.high if m.high is not None else (m.low or 0) + 20)) / 2
        days = data.draw(st.integers(0, m.within_days))
        flags: tuple[str, ...] = ("N",)
        if m is target:
            if what == "missing":
                continue
            if what == "abnormal":
                if m.high is not None:
                    value = m.high + data.draw(st.floats(0.01, 100))
                elif m.low is not None:
                    value = m.low - data.draw(st.floats(0.01, 40))
                else:  # no numbers in the protocol (creatinine, lipids): the lab's flag says abnormal
                    flags = (data.draw(st.sampled_from(["H", "L", "A"])),)
            if what == "flagged":
                flags = (data.draw(st.sampled_from(["H", "L", "HH", "LL", "A", "AA"])),)
                if not m.use_lab_flags:  # this value's flags do not count: put it outside the range instead
                    value = (m.high + 1) if m.high is not None else (m.low - 1)
            if what == "stale":
                days = m.within_days + data.draw(st.integers(1, 1000))
        c.lab(m.loinc[0], round(value, 2), days, flags)
    c.order(CLASSES[drug_class][1] if drug_class != "ace_arb" else "lisinopril 10 MG Oral Tablet")
    name = data.draw(_NAMES)
    t = triage(request(CLASSES[drug_class][1] if data.draw(st.booleans()) else name), c.ctx, rules, NOW)
    assert t.triage_class != "routine", (what, t.reasons)


def test_a_failed_step_still_reaches_a_clinician():
    res = failed_step(request("lisinopril 10 mg"), NOW, "ValueError")
    (item,) = res.work_items
    assert item["kind"] == "refill.needs_review" and item["queue"] == "clinician" and item["priority"] == "high"
    assert item["produced_by"]["rule_id"] == "refill.internal_error"
    assert (
        item["item_id"]
        == refill_step(ace(Chart()).ctx, request("lisinopril 10 mg"), load_refill_rules(), NOW).work_items[0]["item_id"]
    )
    assert res.audit[0].outcome == "failed" and not res.drafts
