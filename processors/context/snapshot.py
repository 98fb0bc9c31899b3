"""PatientContext: one patient's demographics, coverage, visits, results, medications, problems.

Pure and immutable: :func:`apply` folds one normalized record into a snapshot and returns
a new one, so the same records in the same order always give the same context, and a
workflow step that reads it is replayable. The streaming shell stores snapshots in a
Faust table keyed by ``practice_id/patient_id`` (``streams/workflows/context.py``).

What is kept, and why:

* every record as its normalized dict (the Avro shape), keyed by its own id, so an
  update (a corrected result, a discontinued order, a cancelled appointment) replaces
  the earlier version instead of adding to it;
* observations by code (LOINC where the sender gave it), newest first, a few per code
  (:data:`OBSERVATIONS_PER_CODE`): refill rules need the latest value and its date, an
  INR trend needs a few;
* nothing derived: "last visit", "active orders" and the like are computed on read by
  the helpers below, so a rule change never needs the context rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

OBSERVATIONS_PER_CODE: Final = 5
COMPLETED_ENCOUNTER: Final = frozenset({"finished", "completed", "discharged"})
CANCELLED: Final = frozenset({"cancelled", "noshow", "no-show", "entered-in-error"})
INACTIVE_ORDER: Final = frozenset({"stopped", "cancelled", "completed", "entered-in-error", "discontinued", "on-hold"})
#: HL7 v2 order control (ORC-1) / order status (ORC-5) codes -> the FHIR MedicationRequest status words
HL7_ORDER_STATUS: Final = {
    "nw": "active",
    "ok": "active",
    "rf": "active",
    "xo": "active",
    "xx": "active",
    "ro": "active",
    "rp": "active",
    "sc": "active",
    "ip": "active",
    "dc": "stopped",
    "od": "stopped",
    "ca": "cancelled",
    "oc": "cancelled",
    "cr": "cancelled",
    "cm": "completed",
    "hd": "on-hold",
    "oh": "on-hold",
}
APPOINTMENT_DONE: Final = frozenset({"fulfilled", "completed", "complete", "arrived", "checked-in", "checked-out"})
ICD10CM_SYSTEMS: Final = frozenset(
    {"icd-10-cm", "icd10cm", "i10", "icd10", "icd-10", "http://hl7.org/fhir/sid/icd-10-cm", "2.16.840.1.113883.6.90"}
)
_EMPTY: Mapping[str, Any] = MappingProxyType({})

# record type -> the field that is the record's own id
ID_FIELD: Final = {
    "Patient": "patient_id",
    "Coverage": "coverage_id",
    "Encounter": "encounter_id",
    "Appointment": "appointment_id",
    "Observation": "observation_id",
    "MedicationOrder": "order_id",
    "Order": "order_id",
    "Condition": "condition_id",
    "AllergyIntolerance": "allergy_id",
    "Immunization": "immunization_id",
}
CONTEXT_RECORDS: Final = frozenset(ID_FIELD)


@dataclass(frozen=True)
class PatientContext:
    """One patient's snapshot. Mappings are read-only views; use :func:`apply` to change it."""

    practice_id: str
    patient_id: str
    patient: Mapping[str, Any] | None = None
    coverages: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    encounters: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    appointments: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    # code -> observations of that code, newest first (at most OBSERVATIONS_PER_CODE)
    observations: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=lambda: _EMPTY)
    medication_orders: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    orders: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    allergies: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    immunizations: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    records_applied: int = 0

    # ---------------------------------------------------------------- reads the workflows use
    def latest_observation(self, code: str) -> Mapping[str, Any] | None:
        """The newest observation of ``code`` (a LOINC code, or the sender's local code)."""
        seen = self.observations.get(code)
        return seen[0] if seen else None

    def observation_history(self, code: str) -> tuple[Mapping[str, Any], ...]:
        return self.observations.get(code, ())

    def completed_encounters(self) -> list[Mapping[str, Any]]:
        """Visits that happened (finished encounters, or an admit time and no cancellation), newest first."""
        done = [
            e
            for e in self.encounters.values()
            if (e.get("status") or "").lower() in COMPLETED_ENCOUNTER
            or (e.get("admit_at") and (e.get("status") or "").lower() not in CANCELLED | {"planned"})
        ]
        return sorted(done, key=_visit_time, reverse=True)

    def last_completed_visit(
        self, provider: str | None = None, encounter_class: str | None = None
    ) -> Mapping[str, Any] | None:
        for e in self.completed_encounters():
            if provider is not None and e.get("attending_provider") != provider:
                continue
            if encounter_class is not None and e.get("encounter_class") != encounter_class:
                continue
            return e
        return None

    def upcoming_appointments(self, after: str) -> list[Mapping[str, Any]]:
        """Booked (not cancelled) appointments starting at or after ``after`` (ISO 8601), soonest first."""
        booked = [
            a
            for a in self.appointments.values()
            if (a.get("status") or "").lower() not in CANCELLED
            and a.get("event") != "S15"
            and (a.get("start") or "") >= after
        ]
        return sorted(booked, key=lambda a: a.get("start") or "")

    def active_medication_orders(self) -> list[Mapping[str, Any]]:
        return [m for m in self.medication_orders.values() if medication_status(m) not in INACTIVE_ORDER]

    def past_medication_orders(self) -> list[Mapping[str, Any]]:
        """Stopped, cancelled, completed or held orders, newest written first."""
        past = [m for m in self.medication_orders.values() if medication_status(m) in INACTIVE_ORDER]
        return sorted(past, key=lambda m: str(m.get("written_at") or ""), reverse=True)

    def last_visits_by_provider(self) -> dict[str, Mapping[str, Any]]:
        """provider -> that provider's last completed visit."""
        out: dict[str, Mapping[str, Any]] = {}
        for e in self.completed_encounters():  # newest first: the first seen per provider wins
            out.setdefault(str(e.get("attending_provider") or ""), e)
        return out

    def last_visits_by_class(self) -> dict[str, Mapping[str, Any]]:
        """encounter class (ambulatory, inpatient, ...) -> the last completed visit of that class."""
        out: dict[str, Mapping[str, Any]] = {}
        for e in self.completed_encounters():
            out.setdefault(str(e.get("encounter_class") or ""), e)
        return out

    def appointments_by_state(self) -> dict[str, list[Mapping[str, Any]]]:
        """booked | cancelled | completed -> appointments, by start time."""
        out: dict[str, list[Mapping[str, Any]]] = {"booked": [], "cancelled": [], "completed": []}
        for a in sorted(self.appointments.values(), key=lambda a: str(a.get("start") or "")):
            out[appointment_state(a)].append(a)
        return out

    def problems_icd10cm(self) -> list[Mapping[str, Any]]:
        """Active problems coded in ICD-10-CM (by code system name, OID or FHIR URI)."""
        return [
            c for c in self.active_problems() if ((c.get("code") or {}).get("system") or "").lower() in ICD10CM_SYSTEMS
        ]

    def active_problems(self) -> list[Mapping[str, Any]]:
        return [
            c
            for c in self.conditions.values()
            if (c.get("clinical_status") or "active").lower() in ("active", "recurrence", "relapse")
        ]

    def active_coverages(self, on: str | None = None) -> list[Mapping[str, Any]]:
        """Coverages not marked inactive whose period includes ``on`` (ISO date) when given."""
        out = []
        for c in self.coverages.values():
            if (c.get("status") or "active").lower() in ("inactive", "cancelled", "entered-in-error"):
                continue
            if on is not None:
                if c.get("period_start") and c["period_start"][:10] > on[:10]:
                    continue
                if c.get("period_end") and c["period_end"][:10] < on[:10]:
                    continue
            out.append(c)
        return out


def medication_status(order: Mapping[str, Any]) -> str:
    """The order's status as a FHIR MedicationRequest word (HL7 ORC codes translated)."""
    raw = str(order.get("status") or "active").lower()
    return HL7_ORDER_STATUS.get(raw, raw)


def appointment_state(a: Mapping[str, Any]) -> str:
    """booked | cancelled | completed, from the FHIR status or the SIU trigger (S15 = cancelled)."""
    status = str(a.get("status") or "").lower()
    if status in CANCELLED or a.get("event") == "S15":
        return "cancelled"
    if status in APPOINTMENT_DONE:
        return "completed"
    return "booked"


def _visit_time(e: Mapping[str, Any]) -> str:
    return str(e.get("discharge_at") or e.get("admit_at") or "")


def _obs_time(o: Mapping[str, Any]) -> str:
    return str(o.get("effective_at") or "")


def _obs_order(o: Mapping[str, Any]) -> tuple[str, str]:
    return str(o.get("effective_at") or ""), str(o.get("observation_id") or "")


def observation_code(o: Mapping[str, Any]) -> str:
    """The key an observation is filed under: its code (LOINC where sent), else its display."""
    code = o.get("code") or {}
    return str(code.get("code") or code.get("display") or "unknown")


def _put(m: Mapping[str, Mapping[str, Any]], key: str, value: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    new = dict(m)
    new[key] = value
    return MappingProxyType(new)


def _evolve(ctx: PatientContext, **changes: Any) -> PatientContext:
    """``dataclasses.replace`` without re-running ``__init__`` over every field: the fold runs
    once per record (bench/bench_context.py), and replace() was a third of its time."""
    new = object.__new__(PatientContext)
    new.__dict__.update(ctx.__dict__)
    new.__dict__.update(changes)
    return new


def empty(practice_id: str, patient_id: str) -> PatientContext:
    return PatientContext(practice_id=practice_id, patient_id=patient_id)


def apply(ctx: PatientContext, record_type: str, record: Mapping[str, Any]) -> PatientContext:
    """The context with one more normalized record folded in (unknown record types are ignored).

    Records of another practice or patient are refused: the table is keyed by both, and a
    record landing in the wrong snapshot would be a cross-tenant or cross-patient leak."""
    if record.get("practice_id") != ctx.practice_id:
        raise ValueError("record of another practice folded into this context")
    if record_type not in CONTEXT_RECORDS:
        return ctx
    if record_type != "Patient" and record.get("patient_id") not in (None, ctx.patient_id):
        raise ValueError(f"{record_type} of another patient folded into this context")
    n = ctx.records_applied + 1
    key = str(record.get(ID_FIELD[record_type]) or "")
    if record_type == "Patient":
        return _evolve(ctx, patient=MappingProxyType(dict(record)), records_applied=n)
    if record_type == "Observation":
        code = observation_code(record)
        kept = [o for o in ctx.observations.get(code, ()) if o.get("observation_id") != key]
        kept.append(record)
        kept.sort(key=_obs_order, reverse=True)  # time, then id: the same whatever the arrival order
        obs = dict(ctx.observations)
        obs[code] = tuple(kept[:OBSERVATIONS_PER_CODE])
        return _evolve(ctx, observations=MappingProxyType(obs), records_applied=n)
    attr = {
        "Coverage": "coverages",
        "Encounter": "encounters",
        "Appointment": "appointments",
        "MedicationOrder": "medication_orders",
        "Order": "orders",
        "Condition": "conditions",
        "AllergyIntolerance": "allergies",
        "Immunization": "immunizations",
    }[record_type]
    changes: dict[str, Any] = {attr: _put(getattr(ctx, attr), key, record), "records_applied": n}
    return _evolve(ctx, **changes)


def to_json(ctx: PatientContext) -> dict[str, Any]:
    """Plain data for a table's serializer (the inverse is :func:`from_json`)."""
    return {
        "practice_id": ctx.practice_id,
        "patient_id": ctx.patient_id,
        "patient": dict(ctx.patient) if ctx.patient is not None else None,
        "coverages": {k: dict(v) for k, v in ctx.coverages.items()},
        "encounters": {k: dict(v) for k, v in ctx.encounters.items()},
        "appointments": {k: dict(v) for k, v in ctx.appointments.items()},
        "observations": {k: [dict(o) for o in v] for k, v in ctx.observations.items()},
        "medication_orders": {k: dict(v) for k, v in ctx.medication_orders.items()},
        "orders": {k: dict(v) for k, v in ctx.orders.items()},
        "conditions": {k: dict(v) for k, v in ctx.conditions.items()},
        "allergies": {k: dict(v) for k, v in ctx.allergies.items()},
        "immunizations": {k: dict(v) for k, v in ctx.immunizations.items()},
        "records_applied": ctx.records_applied,
    }


def from_json(data: Mapping[str, Any]) -> PatientContext:
    def m(name: str) -> Mapping[str, Mapping[str, Any]]:
        return MappingProxyType({k: MappingProxyType(v) for k, v in (data.get(name) or {}).items()})

    return PatientContext(
        practice_id=data["practice_id"],
        patient_id=data["patient_id"],
        patient=MappingProxyType(data["patient"]) if data.get("patient") is not None else None,
        coverages=m("coverages"),
        encounters=m("encounters"),
        appointments=m("appointments"),
        observations=MappingProxyType(
            {k: tuple(MappingProxyType(o) for o in v) for k, v in (data.get("observations") or {}).items()}
        ),
        medication_orders=m("medication_orders"),
        orders=m("orders"),
        conditions=m("conditions"),
        allergies=m("allergies"),
        immunizations=m("immunizations"),
        records_applied=int(data.get("records_applied") or 0),
    )
