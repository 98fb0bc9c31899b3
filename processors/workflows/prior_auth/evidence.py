"""Each criterion of a set, checked against the patient context: met / not met / insufficient.

The software never concludes "deny". What the records show is sorted for the clinician:
criteria **not met** first, then **insufficient information**, then met, each with the
records behind it and, when not met, what would satisfy it (``Criterion.satisfy``).

"Not met" is said only when the records positively show the criterion fails (a coded
diagnosis outside the list, therapy shorter than required, a result on the wrong side of
the threshold). The absence of a record is "insufficient information": the practice may
simply not have it in the feeds yet.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from practiceflow.processors.base import entity_key
from practiceflow.processors.context.snapshot import ICD10CM_SYSTEMS, PatientContext
from practiceflow.processors.workflows.prior_auth.codes import check, dotted
from practiceflow.processors.workflows.prior_auth.rules import Criterion
from practiceflow.processors.workflows.workitem import evidence

if TYPE_CHECKING:
    from practiceflow.schemas.typed import EvidenceDict

STATUSES: Final = ("not_met", "insufficient", "met")
_ORDER: Final = {s: i for i, s in enumerate(STATUSES)}
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class CriterionResult:
    criterion: Criterion
    status: str  # met | not_met | insufficient
    summary: str  # what the records show, in words
    evidence: tuple[EvidenceDict, ...] = ()

    @property
    def label(self) -> str:
        return {"met": "met", "not_met": "NOT MET", "insufficient": "INSUFFICIENT INFORMATION"}[self.status]


def day(value: Any) -> date | None:
    """The date of an ISO 8601 date/time (or an HL7 ``YYYYMMDD...``), None when unreadable."""
    s = str(value or "").strip()
    if len(s) >= 8 and s[:8].isdigit():
        s = f"{s[:4]}-{s[4:6]}-{s[6:8]}"
    try:
        return date.fromisoformat(s[:10])
    except ValueError:
        return None


def _text(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p).lower()


def _matches(code: str | None, display: str | None, crit: Criterion) -> bool:
    if code and code.strip().upper() in crit.codes:
        return True
    low = (display or "").lower()
    return bool(low) and any(n in low for n in crit.names)


def _key(ctx: PatientContext, rid: Any) -> str:
    return entity_key(ctx.practice_id, ctx.patient_id, str(rid))


def _diagnoses(ctx: PatientContext, order: Mapping[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(code, record type, record id, date) of ICD-10-CM codes on the order and the problem list."""
    out: list[tuple[str, str, str, str | None]] = []
    for dx in order.get("diagnoses") or ():
        system = str(dx.get("system") or "").lower()
        if dx.get("code") and (not system or system in ICD10CM_SYSTEMS):
            out.append((str(dx["code"]), "Order", str(order.get("order_id")), order.get("ordered_at")))
    for c in ctx.problems_icd10cm():
        code = (c.get("code") or {}).get("code")
        if code:
            out.append((str(code), "Condition", str(c.get("condition_id")), c.get("onset") or c.get("recorded_at")))
    seen: set[str] = set()
    unique = []
    for item in out:
        norm = item[0].replace(".", "").upper()
        if norm not in seen:
            seen.add(norm)
            unique.append(item)
    return unique


def _check_diagnosis(
    ctx: PatientContext, order: Mapping[str, Any], crit: Criterion, on: date | None
) -> CriterionResult:
    prefixes = [p.replace(".", "").upper() for p in crit.codes]
    found = _diagnoses(ctx, order)
    if not found:
        return CriterionResult(crit, "insufficient", "no ICD-10-CM diagnosis on the order or the problem list")
    met: list[EvidenceDict] = []
    other: list[EvidenceDict] = []
    not_billable: list[str] = []
    for code, rtype, rid, when in found:
        chk = check(code)
        norm = code.replace(".", "").upper()
        hit = any(norm.startswith(p) for p in prefixes)
        if not chk.valid:
            assessment, note = "invalid", "not in the ICD-10-CM code set"
        elif hit and not chk.billable:
            assessment, note = "not_billable", "a category, not a billable code"
            not_billable.append(dotted(code))
        elif hit:
            assessment, note = "supports", chk.description or ""
        else:
            assessment, note = "other", chk.description or ""
        ev = evidence(
            f"diagnosis {dotted(code)}",
            record_type=rtype,
            record_key=_key(ctx, rid),
            value=dotted(code),
            observed_at=when,
            assessment=assessment,
            excerpt=f"{dotted(code)} {note}".strip(),
        )
        (met if assessment == "supports" else other).append(ev)
    if met:
        return CriterionResult(crit, "met", f"coded: {', '.join(str(e['value']) for e in met)}", tuple(met + other))
    if not_billable:
        summary = f"{', '.join(not_billable)} is a category; a billable (more specific) code is needed"
        return CriterionResult(crit, "insufficient", summary, tuple(other))
    coded = ", ".join(str(e["value"]) for e in other)
    if all(e["assessment"] == "invalid" for e in other):
        return CriterionResult(
            crit, "insufficient", f"no valid ICD-10-CM code ({coded} not in the code set)", tuple(other)
        )
    return CriterionResult(
        crit, "not_met", f"the coded diagnoses ({coded}) are not among those the criterion names", tuple(other)
    )


def _therapies(ctx: PatientContext, crit: Criterion, exclude: str) -> list[tuple[date, str, str, str, str]]:
    """(start, record type, record id, what, code) of orders and medications the criterion names."""
    out = []
    for o in ctx.orders.values():
        if str(o.get("order_id")) == exclude:
            continue
        code = o.get("code") or {}
        start = day(o.get("ordered_at"))
        if start and _matches(code.get("code"), code.get("display"), crit):
            out.append(
                (
                    start,
                    "Order",
                    str(o["order_id"]),
                    str(code.get("display") or code.get("code")),
                    str(code.get("code") or ""),
                )
            )
    for m in ctx.medication_orders.values():
        if str(m.get("order_id")) == exclude:
            continue
        med = m.get("medication") or {}
        start = day(m.get("written_at"))
        if start and _matches(med.get("code"), med.get("display"), crit):
            out.append(
                (
                    start,
                    "MedicationOrder",
                    str(m["order_id"]),
                    str(med.get("display") or med.get("code")),
                    str(med.get("code") or ""),
                )
            )
    return sorted(out)


def _therapy_evidence(
    ctx: PatientContext, items: Iterable[tuple[date, str, str, str, str]], assessment: str
) -> list[EvidenceDict]:
    return [
        evidence(
            what,
            record_type=rtype,
            record_key=_key(ctx, rid),
            value=what,
            observed_at=start.isoformat(),
            assessment=assessment,
            excerpt=f"{what} ordered {start.isoformat()}",
        )
        for start, rtype, rid, what, _code in items
    ]


def _check_therapy(ctx: PatientContext, order: Mapping[str, Any], crit: Criterion, on: date | None) -> CriterionResult:
    items = [t for t in _therapies(ctx, crit, str(order.get("order_id"))) if on is None or t[0] <= on]
    if not items:
        return CriterionResult(crit, "insufficient", "no therapy of the kind named is on record")
    weeks = ((on - items[0][0]).days / 7) if on else 0.0
    need = crit.min_weeks or 0
    ev = tuple(_therapy_evidence(ctx, items, "supports" if weeks >= need else "against"))
    summary = f"{len(items)} order(s) since {items[0][0].isoformat()}: {weeks:.1f} weeks before this order"
    if weeks >= need:
        return CriterionResult(crit, "met", summary, ev)
    return CriterionResult(crit, "not_met", f"{summary}; {need} weeks required", ev)


def _check_imaging(ctx: PatientContext, order: Mapping[str, Any], crit: Criterion, on: date | None) -> CriterionResult:
    items = [t for t in _therapies(ctx, crit, str(order.get("order_id"))) if on is None or t[0] <= on]
    if not items:
        return CriterionResult(crit, "insufficient", "no prior imaging of the kind named is on record")
    latest = items[-1]
    age = (on - latest[0]).days if on else 0
    if crit.lookback_days is None or age <= crit.lookback_days:
        ev = tuple(_therapy_evidence(ctx, [latest], "supports"))
        return CriterionResult(crit, "met", f"{latest[3]} on {latest[0].isoformat()} ({age} days before)", ev)
    ev = tuple(_therapy_evidence(ctx, [latest], "too_old"))
    return CriterionResult(crit, "insufficient", f"the latest ({latest[0].isoformat()}) is {age} days old", ev)


def _observations(ctx: PatientContext, crit: Criterion) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for code in crit.codes:
        out.extend(ctx.observation_history(code))
    if crit.names:
        for code, hist in ctx.observations.items():
            if code in crit.codes:
                continue
            if hist and _matches(None, _text((hist[0].get("code") or {}).get("display"), code), crit):
                out.extend(hist)
    return sorted(out, key=lambda o: str(o.get("effective_at") or ""), reverse=True)


def _check_lab(ctx: PatientContext, order: Mapping[str, Any], crit: Criterion, on: date | None) -> CriterionResult:
    obs = [o for o in _observations(ctx, crit) if on is None or (day(o.get("effective_at")) or date.max) <= on]
    if not obs:
        return CriterionResult(crit, "insufficient", "no result of the kind named is on record")
    o = obs[0]
    when = day(o.get("effective_at"))
    age = (on - when).days if (on and when) else None
    name = str((o.get("code") or {}).get("display") or (o.get("code") or {}).get("code"))

    def ev(assessment: str) -> tuple[EvidenceDict, ...]:
        return (
            evidence(
                name,
                record_type="Observation",
                record_key=_key(ctx, o.get("observation_id")),
                value=None if o.get("value") is None else str(o.get("value")),
                unit=o.get("units"),
                reference_range=o.get("reference_range"),
                flags=o.get("abnormal_flags") or (),
                observed_at=o.get("effective_at"),
                assessment=assessment,
            ),
        )

    if crit.lookback_days is not None and (age is None or age > crit.lookback_days):
        return CriterionResult(
            crit,
            "insufficient",
            f"the latest {name} ({o.get('effective_at')}) is older than {crit.lookback_days} days",
            ev("too_old"),
        )
    if crit.comparator is None or crit.threshold is None:
        return CriterionResult(crit, "met", f"{name}: {o.get('value')} ({o.get('effective_at')})", ev("supports"))
    value = o.get("value_numeric")
    if value is None:
        return CriterionResult(crit, "insufficient", f"{name} has no numeric value to compare", ev("unreadable"))
    ok = _OPS[crit.comparator](float(value), crit.threshold)
    summary = f"{name} {value:g} {o.get('units') or ''} on {o.get('effective_at')} (needs {crit.comparator} {crit.threshold:g})"
    return CriterionResult(crit, "met" if ok else "not_met", summary, ev("supports" if ok else "against"))


def _check_medications(
    ctx: PatientContext, order: Mapping[str, Any], crit: Criterion, on: date | None
) -> CriterionResult:
    items = [t for t in _therapies(ctx, crit, str(order.get("order_id"))) if t[1] == "MedicationOrder"]
    items = [t for t in items if on is None or t[0] <= on]
    if not items:
        return CriterionResult(crit, "insufficient", "none of the medications named is on record")
    need_weeks = crit.min_weeks or 0
    long_enough: dict[str, tuple[date, str, str, str, str]] = {}
    for t in items:
        weeks = ((on - t[0]).days / 7) if on else 0.0
        if weeks >= need_weeks:
            drug = next((n for n in crit.names if n in t[3].lower()), t[4] or t[3].lower())
            long_enough.setdefault(drug, t)
    ok = len(long_enough) >= crit.min_count
    ev = tuple(_therapy_evidence(ctx, items, "supports" if ok else "against"))
    summary = f"{len(long_enough)} of {crit.min_count} required tried for {need_weeks}+ weeks ({', '.join(sorted(long_enough)) or 'none long enough'})"
    return CriterionResult(crit, "met" if ok else "not_met", summary, ev)


def _check_documentation(
    ctx: PatientContext, order: Mapping[str, Any], crit: Criterion, on: date | None
) -> CriterionResult:
    return CriterionResult(crit, "insufficient", "only the visit note can show this; attach it")


_CHECKS: Final = {
    "diagnosis": _check_diagnosis,
    "conservative_therapy": _check_therapy,
    "prior_imaging": _check_imaging,
    "lab": _check_lab,
    "medication_tried": _check_medications,
    "documentation": _check_documentation,
}


def assess(
    ctx: PatientContext, order: Mapping[str, Any], criteria: Sequence[Criterion], on: date | None
) -> tuple[CriterionResult, ...]:
    """Every criterion, sorted not met -> insufficient -> met (file order within each)."""
    results = [_CHECKS[c.kind](ctx, order, c, on) for c in criteria]
    return tuple(sorted(results, key=lambda r: _ORDER[r.status]))  # sorted() is stable: file order kept
