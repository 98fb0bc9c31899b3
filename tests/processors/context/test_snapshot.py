"""The patient context fold: pure, replaces updated records, keeps tenants and patients apart."""

from __future__ import annotations

import json

import pytest

from practiceflow.processors.context.snapshot import apply, empty, from_json, to_json

SRC = {"feed": "hl7v2", "message_id": "m"}


def obs(oid: str, code: str, value: str, at: str, flags=()):
    return {
        "practice_id": "p1",
        "patient_id": "MRN1",
        "observation_id": oid,
        "code": {"system": "LN", "code": code, "display": "Potassium"},
        "value": value,
        "units": "mmol/L",
        "abnormal_flags": list(flags),
        "effective_at": at,
        "source": SRC,
    }


def test_latest_observation_by_code_newest_first_and_corrections_replace():
    ctx = empty("p1", "MRN1")
    ctx = apply(ctx, "Observation", obs("o1", "2823-3", "4.1", "2026-01-05"))
    ctx = apply(ctx, "Observation", obs("o2", "2823-3", "5.9", "2026-06-01", ["H"]))
    ctx = apply(ctx, "Observation", obs("o0", "2823-3", "3.9", "2025-01-01"))  # late arrival of an older result
    assert ctx.latest_observation("2823-3")["value"] == "5.9"
    ctx = apply(ctx, "Observation", obs("o2", "2823-3", "4.9", "2026-06-01"))  # corrected
    assert [o["value"] for o in ctx.observation_history("2823-3")] == ["4.9", "4.1", "3.9"]


def test_visits_orders_coverage_reads():
    ctx = empty("p1", "MRN1")
    enc = {"practice_id": "p1", "patient_id": "MRN1", "source": SRC}
    ctx = apply(
        ctx,
        "Encounter",
        {**enc, "encounter_id": "e1", "status": "finished", "admit_at": "2026-03-01", "attending_provider": "DR1"},
    )
    ctx = apply(ctx, "Encounter", {**enc, "encounter_id": "e2", "status": "cancelled", "admit_at": "2026-09-01"})
    ctx = apply(
        ctx,
        "Encounter",
        {**enc, "encounter_id": "e3", "status": "finished", "admit_at": "2026-05-01", "attending_provider": "DR2"},
    )
    assert ctx.last_completed_visit()["encounter_id"] == "e3"
    assert ctx.last_completed_visit(provider="DR1")["encounter_id"] == "e1"
    med = {**enc, "order_id": "rx1", "medication": {"code": "314076"}, "status": "active"}
    ctx = apply(ctx, "MedicationOrder", med)
    assert [m["order_id"] for m in ctx.active_medication_orders()] == ["rx1"]
    ctx = apply(ctx, "MedicationOrder", {**med, "status": "discontinued"})
    assert ctx.active_medication_orders() == []
    cov = {**enc, "coverage_id": "c1", "period_start": "2026-01-01", "period_end": "2026-06-30"}
    ctx = apply(ctx, "Coverage", cov)
    assert ctx.active_coverages("2026-03-01") and not ctx.active_coverages("2026-07-01")


def test_the_fold_refuses_another_practice_or_patient():
    ctx = empty("p1", "MRN1")
    with pytest.raises(ValueError, match="another practice"):
        apply(ctx, "Observation", {**obs("o1", "2823-3", "4", "2026"), "practice_id": "p2"})
    with pytest.raises(ValueError, match="another patient"):
        apply(ctx, "Observation", {**obs("o1", "2823-3", "4", "2026"), "patient_id": "MRN2"})


def test_unknown_records_are_ignored_and_json_round_trips():
    ctx = apply(empty("p1", "MRN1"), "Observation", obs("o1", "2823-3", "4.1", "2026-01-05"))
    assert apply(ctx, "FlowEvent", {"practice_id": "p1"}) is ctx
    back = from_json(json.loads(json.dumps(to_json(ctx))))
    assert to_json(back) == to_json(ctx)
    assert back.latest_observation("2823-3")["value"] == "4.1"


def test_same_records_same_order_same_context():
    records = [obs(f"o{i}", "2823-3", str(i), f"2026-01-{i + 1:02d}") for i in range(8)]
    a = b = empty("p1", "MRN1")
    for r in records:
        a = apply(a, "Observation", r)
        b = apply(b, "Observation", r)
    assert to_json(a) == to_json(b) and a.records_applied == 8
