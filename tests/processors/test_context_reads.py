"""The context reads workflows use, over records as the normalizers write them (HL7 codes included)."""

from __future__ import annotations

import itertools

from practiceflow.processors.context.snapshot import apply, empty, medication_status

P, MRN = "p1", "MRN1"
SRC = {"feed": "hl7v2", "message_id": "m"}
BASE = {"practice_id": P, "patient_id": MRN, "source": SRC}


def fold(records):
    ctx = empty(P, MRN)
    for rt, rec in records:
        ctx = apply(ctx, rt, {**BASE, **rec})
    return ctx


def test_hl7_order_control_codes_count_as_statuses():
    """An RDE's ORC-1 lands in MedicationOrder.status: NW is a new active order, DC a
    discontinued one; before, any code but the FHIR words counted as active."""
    rx = {"medication": {"system": "RXNORM", "code": "314076"}, "written_at": "2026-01-01"}
    ctx = fold([("MedicationOrder", {**rx, "order_id": "a", "status": "NW"})])
    assert [m["order_id"] for m in ctx.active_medication_orders()] == ["a"]
    ctx = apply(ctx, "MedicationOrder", {**BASE, **rx, "order_id": "a", "status": "DC"})
    assert ctx.active_medication_orders() == [] and [m["order_id"] for m in ctx.past_medication_orders()] == ["a"]
    assert [medication_status({"status": s}) for s in ("NW", "DC", "CA", "HD", "CM", "active", None)] == [
        "active",
        "stopped",
        "cancelled",
        "on-hold",
        "completed",
        "active",
        "active",
    ]


def test_last_visit_per_provider_and_per_class():
    def enc(eid, provider, klass, at, status="finished"):
        return (
            "Encounter",
            {
                "encounter_id": eid,
                "attending_provider": provider,
                "encounter_class": klass,
                "admit_at": at,
                "status": status,
            },
        )

    ctx = fold(
        [
            enc("e1", "DR1", "ambulatory", "2026-01-10"),
            enc("e2", "DR2", "ambulatory", "2026-03-10"),
            enc("e3", "DR1", "virtual", "2026-02-10"),
            enc("e4", "DR1", "ambulatory", "2026-04-10", status="cancelled"),
        ]
    )
    assert {p: e["encounter_id"] for p, e in ctx.last_visits_by_provider().items()} == {"DR1": "e3", "DR2": "e2"}
    assert {c: e["encounter_id"] for c, e in ctx.last_visits_by_class().items()} == {
        "ambulatory": "e2",
        "virtual": "e3",
    }


def test_appointments_booked_cancelled_completed():
    def appt(aid, start, status=None, event="S12"):
        return ("Appointment", {"appointment_id": aid, "start": start, "status": status, "event": event})

    ctx = fold(
        [
            appt("a1", "2026-05-01", "booked"),
            appt("a2", "2026-04-01", event="S15"),
            appt("a3", "2026-03-01", "fulfilled"),
        ]
    )
    by = {k: [a["appointment_id"] for a in v] for k, v in ctx.appointments_by_state().items()}
    assert by == {"booked": ["a1"], "cancelled": ["a2"], "completed": ["a3"]}


def test_problems_coded_in_icd10cm():
    ctx = fold(
        [
            (
                "Condition",
                {"condition_id": "c1", "code": {"system": "I10", "code": "E11.9"}, "clinical_status": "active"},
            ),
            ("Condition", {"condition_id": "c2", "code": {"system": "SNOMED", "code": "44054006"}}),
            (
                "Condition",
                {
                    "condition_id": "c3",
                    "code": {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"},
                    "clinical_status": "resolved",
                },
            ),
        ]
    )
    assert [c["condition_id"] for c in ctx.problems_icd10cm()] == ["c1"]


def test_observations_of_the_same_time_keep_one_order_whatever_arrives_first():
    obs = [
        (
            "Observation",
            {"observation_id": oid, "code": {"code": "2823-3"}, "value": v, "effective_at": "2026-01-01T08:00"},
        )
        for oid, v in (("o1", "4.1"), ("o2", "4.3"), ("o3", "4.0"))
    ]
    orders = {
        tuple(o["observation_id"] for o in fold(perm).observation_history("2823-3"))
        for perm in itertools.permutations(obs)
    }
    assert orders == {("o3", "o2", "o1")}
