"""The claim store's pure side: what a claim was, what changed since, and the field-level diff.

The store (a Faust table in ``streams/workflows/denials.py``, keyed ``practice/claim id``)
holds, per claim, the 837 as the practice first sent it and the latest 837 seen for the
same claim id, plus the 835s already applied to it. Per patient (a second table) it holds
the practice's latest coverages and the authorizations on file. This module folds records
into those states and answers one question for a denial: *what has changed since the
claim went out that would fix it?*

* **New coverage** (a Coverage or an active 271 for the patient naming another payer or
  member id) fixes an eligibility/coverage or coordination-of-benefits denial.
* **An authorization on file** for the date of service (and procedure, when the
  authorization names procedures) fixes an authorization denial.
* **A corrected code**: a later 837 of the same claim id whose codes, modifiers, place of
  service or diagnoses differ from the first — the coder fixed it in the practice's
  system — fixes a coding, missing-information or bundling denial.

States are plain JSON-able dicts (Faust table values), never mutated: every fold returns
a new dict, so a replayed record produces the identical state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Fields a fix may change, and how a diff names them. Order = the order a person reads.
_CLAIM_FIELDS = (
    "payer_id",
    "payer_name",
    "member_id",
    "authorization_number",
    "place_of_service",
    "patient_id",
    "total_charge",
    "service_date",
)
_LINE_FIELDS = ("procedure.code", "procedure.system", "modifiers", "charge", "units", "service_date")
REPLACEMENT_FIELDS = ("status", "frequency_code", "payer_claim_control_number")


@dataclass(frozen=True)
class FieldChange:
    """One field of the claim that a fix changes: ``path`` like ``member_id`` or ``lines[2].modifiers``."""

    path: str
    old: Any
    new: Any
    why: str = ""
    record_type: str | None = None  # the record that shows the new value (Coverage, Claim, ...)
    record_key: str | None = None


@dataclass(frozen=True)
class PatientFacts:
    """What the practice knows about the patient now: coverages and authorizations on file."""

    coverages: tuple[Mapping[str, Any], ...] = ()
    authorizations: tuple[Mapping[str, Any], ...] = ()
    # False when the patient-context tables had not caught up: a new coverage or authorization
    # may be missing, so no fix (or its absence) read from these facts is trusted (step.decide)
    current: bool = True


@dataclass(frozen=True)
class Fix:
    """The changes that fix a denial, and which of the three kinds of change they are."""

    kind: str  # coverage | authorization | corrected_code
    changes: tuple[FieldChange, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- folds
def empty_claim_state() -> dict[str, Any]:
    return {"claim": None, "latest": None, "adjudications": {}, "open": []}


def fold_claim(state: Mapping[str, Any] | None, claim: Mapping[str, Any]) -> dict[str, Any]:
    """The store after an 837 ``Claim``: the first original stays ``claim``; every version is ``latest``.

    A replacement (frequency 7) the practice sent itself becomes ``latest`` too; a void (8)
    is kept as ``latest`` with status void (the workflow then proposes nothing)."""
    new = dict(state) if state else empty_claim_state()
    c = {k: v for k, v in claim.items() if k != "source"} | {"source": dict(claim.get("source") or {})}
    if new.get("claim") is None:
        new["claim"] = c
    new["latest"] = c
    return new


def fold_patient(state: Mapping[str, Any] | None, record_type: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The patient's facts after a Coverage, an EligibilityResponse (active, with a member id)
    or an authorization ``{"number", "service_start", "service_end", "procedures"}``."""
    new: dict[str, Any] = {"coverages": list((state or {}).get("coverages") or ())}
    new["authorizations"] = list((state or {}).get("authorizations") or ())
    if record_type == "Coverage":
        cov = {
            "payer_id": record.get("payer_id"),
            "payer_name": record.get("payer_name"),
            "member_id": record.get("member_id"),
            "status": record.get("status"),
            "period_start": record.get("period_start"),
            "period_end": record.get("period_end"),
            "coverage_id": record.get("coverage_id"),
            "record_type": "Coverage",
            "record_key": f"{record.get('practice_id')}/{record.get('patient_id')}/{record.get('coverage_id')}",
        }
        new["coverages"] = [c for c in new["coverages"] if c.get("coverage_id") != cov["coverage_id"]] + [cov]
    elif record_type == "EligibilityResponse":
        if record.get("active") and record.get("member_id"):
            cov = {
                "payer_id": record.get("payer_id"),
                "payer_name": record.get("payer_name"),
                "member_id": record.get("member_id"),
                "status": "active",
                "period_start": None,
                "period_end": None,
                "coverage_id": f"271:{record.get('response_id')}",
                "record_type": "EligibilityResponse",
                "record_key": f"{record.get('practice_id')}/{record.get('patient_id')}/{record.get('response_id')}",
            }
            new["coverages"] = [c for c in new["coverages"] if c.get("coverage_id") != cov["coverage_id"]] + [cov]
    elif record_type == "Authorization":
        num = record.get("number")
        if num:
            new["authorizations"] = [a for a in new["authorizations"] if a.get("number") != num] + [dict(record)]
    new["coverages"] = new["coverages"][-20:]  # bounded: the latest coverages are what a fix needs
    new["authorizations"] = new["authorizations"][-50:]
    return new


def facts_of(state: Mapping[str, Any] | None) -> PatientFacts:
    if not state:
        return PatientFacts()
    return PatientFacts(tuple(state.get("coverages") or ()), tuple(state.get("authorizations") or ()))


# --------------------------------------------------------------------------- diff
def _get(obj: Mapping[str, Any] | None, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def claim_diff(before: Mapping[str, Any], after: Mapping[str, Any], *, replacement: bool = True) -> list[FieldChange]:
    """Field-level differences between two Claim records (``source`` ignored).

    ``replacement=False`` leaves out the fields every replacement changes (status,
    frequency code, payer claim control number), so what remains is the fix alone."""
    out: list[FieldChange] = []
    fields: Iterable[str] = (*_CLAIM_FIELDS, *(REPLACEMENT_FIELDS if replacement else ()))
    for f in fields:
        a, b = before.get(f), after.get(f)
        if f == "status":
            a, b = a or "submitted", b or "submitted"
        if f == "frequency_code":
            a, b = a or "1", b or "1"
        if a != b:
            out.append(FieldChange(f, a, b))
    dx_a = [d.get("code") for d in before.get("diagnoses") or ()]
    dx_b = [d.get("code") for d in after.get("diagnoses") or ()]
    if dx_a != dx_b:
        out.append(FieldChange("diagnoses", dx_a, dx_b))
    la: Sequence[Mapping[str, Any]] = before.get("lines") or ()
    lb: Sequence[Mapping[str, Any]] = after.get("lines") or ()
    for i in range(max(len(la), len(lb))):
        if i >= len(la) or i >= len(lb):
            out.append(FieldChange(f"lines[{i + 1}]", _line_summary(la, i), _line_summary(lb, i)))
            continue
        for f in _LINE_FIELDS:
            a, b = _get(la[i], f), _get(lb[i], f)
            if f == "modifiers":
                a, b = list(a or ()), list(b or ())
            if a != b:
                out.append(FieldChange(f"lines[{i + 1}].{f}", a, b))
    return out


def _line_summary(lines: Sequence[Mapping[str, Any]], i: int) -> str | None:
    if i >= len(lines):
        return None
    ln = lines[i]
    return f"{_get(ln, 'procedure.code')} {'/'.join(ln.get('modifiers') or ())} {ln.get('charge')}".strip()


def apply_changes(claim: Mapping[str, Any], changes: Iterable[FieldChange]) -> dict[str, Any]:
    """A deep copy of ``claim`` with the changes applied (paths as :func:`claim_diff` writes them)."""
    out: dict[str, Any] = copy.deepcopy(dict(claim))
    for ch in changes:
        path = ch.path
        if path == "diagnoses":
            systems = {d.get("code"): d.get("system") for d in out.get("diagnoses") or ()}
            default = (out.get("diagnoses") or [{}])[0].get("system") if out.get("diagnoses") else None
            out["diagnoses"] = [
                {"system": systems.get(c, default or "http://hl7.org/fhir/sid/icd-10-cm"), "code": c, "display": None}
                for c in ch.new or ()
            ]
        elif path.startswith("lines["):
            idx_s, _, rest = path[6:].partition("]")
            idx = int(idx_s) - 1
            rest = rest.lstrip(".")
            if not rest:
                raise ValueError(f"adding or removing a whole line ({path}) is left to a person")
            target: dict[str, Any] = out["lines"][idx]
            parts = rest.split(".")
            for p in parts[:-1]:
                target = target.setdefault(p, {})
            target[parts[-1]] = copy.deepcopy(ch.new)
        else:
            out[path] = ch.new
    return out


# --------------------------------------------------------------------------- fixes
def _in_period(date: str | None, start: str | None, end: str | None) -> bool:
    if not date:
        return True
    return (not start or start <= date) and (not end or date <= end)


def coverage_fix(claim: Mapping[str, Any], facts: PatientFacts) -> Fix | None:
    """The newest active coverage for the date of service that names another payer or member id."""
    dos = claim.get("service_date")
    for cov in reversed(facts.coverages):
        if cov.get("status") not in (None, "active"):
            continue
        if not _in_period(dos, cov.get("period_start"), cov.get("period_end")):
            continue
        changes = []
        for f in ("payer_id", "payer_name", "member_id"):
            new = cov.get(f)
            if new and new != claim.get(f):
                why = f"coverage on file ({cov.get('record_type')}) names {f.replace('_', ' ')} {new}"
                changes.append(FieldChange(f, claim.get(f), new, why, cov.get("record_type"), cov.get("record_key")))
        if changes:
            return Fix("coverage", tuple(changes))
        return None  # the newest matching coverage is what the claim already says
    return None


def authorization_fix(claim: Mapping[str, Any], facts: PatientFacts) -> Fix | None:
    """An authorization on file for the date of service (and one of the claim's procedures), from
    the claim's own payer when the authorization names its payer (a fact from the prior-auth table
    always does: a patient with two coverages must not get payer A's number on a claim to payer B)."""
    dos = claim.get("service_date")
    codes = {_get(ln, "procedure.code") for ln in claim.get("lines") or ()}
    for auth in reversed(facts.authorizations):
        if not _in_period(dos, auth.get("service_start"), auth.get("service_end")):
            continue
        procs = set(auth.get("procedures") or ())
        if procs and not (procs & codes):
            continue
        if "payer_id" in auth and (not auth["payer_id"] or auth["payer_id"] != claim.get("payer_id")):
            continue  # another payer's number (or one nobody can tell): never on this claim (review s21 S2)
        num = auth.get("number")
        if num and num != claim.get("authorization_number"):
            why = f"authorization {num} on file for {dos or 'the service'}"
            ch = FieldChange(
                "authorization_number",
                claim.get("authorization_number"),
                num,
                why,
                "Authorization",
                auth.get("record_key"),
            )
            return Fix("authorization", (ch,))
    return None


def corrected_code_fix(state: Mapping[str, Any]) -> Fix | None:
    """A later 837 of the claim whose codes differ from the first one sent."""
    first, latest = state.get("claim"), state.get("latest")
    if not first or not latest or latest is first:
        return None
    if (latest.get("status") or "submitted") == "void":
        return None
    changes = [
        FieldChange(ch.path, ch.old, ch.new, "the claim was re-coded in the practice's system (a later 837)", "Claim")
        for ch in claim_diff(first, latest, replacement=False)
        if ch.path.startswith(("lines[", "diagnoses", "place_of_service"))
    ]
    return Fix("corrected_code", tuple(changes)) if changes else None


# which kinds of change fix which denial categories
FIXES_FOR: dict[str, tuple[str, ...]] = {
    "eligibility_coverage": ("coverage",),
    "coordination_of_benefits": ("coverage",),
    "authorization_missing": ("authorization",),
    "coding_modifier": ("corrected_code",),
    "missing_information": ("corrected_code", "authorization", "coverage"),
    "bundling": ("corrected_code",),
}


def find_fix(category: str, state: Mapping[str, Any] | None, facts: PatientFacts) -> Fix | None:
    """The first fix on file for a denial category, or None."""
    claim = (state or {}).get("claim")
    if not claim:
        return None
    for kind in FIXES_FOR.get(category, ()):
        if kind == "coverage":
            fix = coverage_fix(claim, facts)
        elif kind == "authorization":
            fix = authorization_fix(claim, facts)
        else:
            fix = corrected_code_fix(state or {})
        if fix is not None:
            return fix
    return None
