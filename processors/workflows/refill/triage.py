"""Refill triage: one request + the patient's context + the protocols -> one class, with evidence.

Exactly one class per request:

* ``routine`` — every condition of the drug class's protocol holds: the drug is identified,
  not controlled, covered by a protocol, matches an ACTIVE order of the same strength, a
  completed visit lies within the class's window, and every required lab and vital is
  present, recent enough, inside the protocol's range and not flagged abnormal. Only then
  is a renewal drafted, and even then a clinician signs it off.
* ``needs_visit`` — the drug and order are fine but there is no completed visit in the
  window (or none on record): the patient must be seen (a clinician may bridge).
* ``needs_review`` — everything else: a controlled substance (DEA II-V, always), a drug the
  tables cannot identify or no protocol covers, a combination product, no matching active
  order (none, discontinued, another strength), a missing / stale / abnormal / unreadable
  monitoring value. Fail closed: whatever the rules do not clearly cover goes to a person.

The fail-closed policies (controlled, unidentified, no protocol, no order) are code, not
YAML: a practice's rule file can tune windows and ranges but cannot make a controlled
substance routine. Each names itself as a rule (:data:`POLICIES`) so every work item
still says which rule (id and version) decided it.

Pure: no clock (``now`` is the request's time in epoch ms), no I/O; the same request
and context always give the same triage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Final, NamedTuple

from practiceflow.processors.context.snapshot import PatientContext

from .drugs import Identification, Strength, parse_strength
from .rules import MonitoringPlan, RefillRule, RefillRules

ROUTINE: Final = "routine"
NEEDS_REVIEW: Final = "needs_review"
NEEDS_VISIT: Final = "needs_visit"
CLASSES: Final = (ROUTINE, NEEDS_REVIEW, NEEDS_VISIT)


_REVIEW_FIRST: Final = frozenset(
    {
        "controlled_substance",
        "drug_not_identified",
        "combination_product",
        "no_protocol",
        "unrecognised_words",
        "strength_mismatch",
        "order_not_active",
        "no_active_order",
        "order_ambiguous",
        "context_not_current",  # the patient context had not caught up: an order or lab may be missing
    }
)  # reasons that make a request needs_review whatever the visit says


@dataclass(frozen=True, slots=True)
class Policy:
    """A fail-closed policy in code, named like a rule (id, version, source)."""

    id: str
    version: str
    source: str


POLICIES: Final = {
    "controlled": Policy(
        "refill.controlled_substance",
        "1",
        "DEA schedules II-V (21 CFR 1308.12-1308.15; rules/refill/controlled.yaml): never routine, always a clinician",
    ),
    "unidentified": Policy(
        "refill.unidentified_drug", "1", "fail closed: the drug tables (rules/refill/drugs.yaml) do not identify it"
    ),
    "no_protocol": Policy("refill.no_protocol", "1", "fail closed: no refill protocol covers this drug or combination"),
}

# Sender flags that do NOT mean abnormal (HL7 table 0078 N; FHIR interpretation N; empty)
_NORMAL_FLAGS: Final = frozenset({"", "N", "NORMAL", "NEG", "NR"})
# Observation statuses a protocol may rely on (HL7 OBX-11 F/C/A, FHIR final/amended/corrected)
_FINAL: Final = frozenset({"", "F", "C", "A", "FINAL", "CORRECTED", "AMENDED", "APPENDED"})
# Order statuses that are not an active prescription (HL7 ORC-1/ORC-5, FHIR MedicationRequest.status)
_INACTIVE_ORDER: Final = frozenset(
    {
        "DC", "CA", "CM", "ER", "HD", "RP", "OD", "OC", "OH", "DR", "CR",  # HL7 order control / status
        "STOPPED", "CANCELLED", "COMPLETED", "ENTERED-IN-ERROR", "DISCONTINUED", "ON-HOLD", "DRAFT", "UNKNOWN",
    }
)  # fmt: skip


class Finding(NamedTuple):
    """One piece of evidence, as the work-item contract's Evidence wants it (a NamedTuple:
    several are built per decision, and a frozen dataclass costs a setattr per field)."""

    label: str
    assessment: str  # present | missing | abnormal | stale | mismatch | met | not_met | info
    record_type: str | None = None
    record_key: str | None = None
    value: str | None = None
    unit: str | None = None
    reference_range: str | None = None
    flags: tuple[str, ...] = ()
    observed_at: str | None = None
    excerpt: str | None = None


class Triage(NamedTuple):
    """The decision and everything it rests on."""

    triage_class: str
    rule_id: str
    rule_version: str
    rule_source: str
    reasons: tuple[str, ...]  # codes of every unmet condition, in the order they were checked
    missing: tuple[str, ...]  # what is missing, in words ("potassium within 365 days")
    findings: tuple[Finding, ...]
    identification: Identification
    drug_class: str | None
    order: Mapping[str, Any] | None  # the matching active order, if any
    last_visit: Mapping[str, Any] | None

    @property
    def routine(self) -> bool:
        return self.triage_class == ROUTINE


@lru_cache(maxsize=65536)
def day_of(value: str | None) -> date | None:
    """The calendar day of an ISO 8601 date/time at any precision; partial dates count from
    their EARLIEST day (``2026-05`` -> May 1), so an imprecise date never looks more recent."""
    if not value:
        return None
    s = value.strip()
    try:
        if len(s) >= 10:
            return date.fromisoformat(s[:10])
        if len(s) == 7:
            return date(int(s[:4]), int(s[5:7]), 1)
        if len(s) == 4:
            return date(int(s), 1, 1)
    except ValueError:
        return None
    return None


def _today(now_ms: int) -> date:
    return _day_number(now_ms // 86_400_000)


@lru_cache(maxsize=1024)
def _day_number(days: int) -> date:
    return datetime.fromtimestamp(days * 86_400, tz=UTC).date()


def order_strength(order: Mapping[str, Any]) -> Strength | None:
    """The strength of an order: from its medication's name (RxNorm SCD names carry it), else
    from dose + dose units when those are a mass (``10`` ``mg``)."""
    med = order.get("medication") or {}
    s = parse_strength(str(med.get("display") or ""))
    if s is not None:
        return s
    dose, units = order.get("dose"), order.get("dose_units")
    if dose and units:
        return parse_strength(f"{dose} {units}")
    return None


def _obs_value(o: Mapping[str, Any]) -> float | None:
    v = o.get("value_numeric")
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(o.get("value") or "").strip())
    except ValueError:
        return None


def _flags(o: Mapping[str, Any]) -> tuple[str, ...]:
    flags = o.get("abnormal_flags")
    return tuple(str(f) for f in flags if f) if flags else ()


def _check_monitoring(ctx: PatientContext, m: MonitoringPlan, today: date) -> tuple[Finding, str | None, str | None]:
    """(finding, reason code if unmet, missing text if missing) for one lab or vital."""
    newest: Mapping[str, Any] | None = None
    newest_day: date | None = None
    observations = ctx.observations
    for code in m.loinc:
        seen = observations.get(code)
        if not seen:
            continue
        o = seen[0]
        d = day_of(o.get("effective_at"))
        if newest is None or (d is not None and (newest_day is None or d > newest_day)):
            newest, newest_day = o, d
    name, kind = m.name, m.kind
    if newest is None:
        return Finding(name, "missing", excerpt=f"no {name} on record"), f"{kind}_missing", m.want
    get = newest.get
    raw = get("value")
    value = _obs_value(newest)
    flags = _flags(newest)
    observed = get("effective_at")
    key = f"{get('practice_id')}/{get('patient_id')}/{get('observation_id')}"
    shown = str(raw if raw is not None else (value if value is not None else ""))
    unit = get("units") or m.unit
    ref = get("reference_range") or m.range_text
    if newest_day is None:
        why, miss, assessment, excerpt = f"{kind}_undated", m.want, "missing", "result has no usable date"
    elif (age := (today - newest_day).days) > m.within_days:
        why, miss, assessment = f"{kind}_stale", m.want, "stale"
        excerpt = f"{age} days old; the protocol wants {m.within_days}"
    elif age < -1:
        why, miss, assessment, excerpt = f"{kind}_future_dated", None, "mismatch", "dated in the future"
    elif (status := get("status")) and str(status).upper() not in _FINAL:
        why, miss, assessment, excerpt = f"{kind}_not_final", None, "not_met", f"result status {status}"
    elif value is None and (m.low is not None or m.high is not None):
        why, miss, assessment, excerpt = f"{kind}_unreadable", None, "not_met", "value is not a number"
    elif value is not None and ((m.low is not None and value < m.low) or (m.high is not None and value > m.high)):
        why, miss, assessment = f"{kind}_abnormal", None, "abnormal"
        excerpt = f"outside the protocol's range {m.range_text}"
    elif m.use_lab_flags and any(f.upper() not in _NORMAL_FLAGS for f in flags):
        why, miss, assessment, excerpt = f"{kind}_abnormal", None, "abnormal", f"flagged {','.join(flags)}"
    else:
        why, miss, assessment, excerpt = None, None, "met", None
    return Finding(name, assessment, "Observation", key, shown, unit, ref, flags, observed, excerpt), why, miss


def _last_visit(ctx: PatientContext, today: date) -> Mapping[str, Any] | None:
    """The newest completed encounter up to today (a pre-admission with a future time is not a visit)."""
    best: Mapping[str, Any] | None = None
    best_day: date | None = None
    for e in ctx.completed_encounters():
        d = day_of(e.get("discharge_at") or e.get("admit_at"))
        if d is not None and d <= today and (best_day is None or d > best_day):
            best, best_day = e, d
    return best


def _visit_finding(visit: Mapping[str, Any] | None, rule: RefillRule | None, today: date) -> tuple[Finding, str | None]:
    if visit is None:
        return Finding("last completed visit", "missing", excerpt="no completed visit on record"), "no_visit"
    when = visit.get("discharge_at") or visit.get("admit_at")
    d = day_of(when)
    age = (today - d).days if d is not None else None
    provider = visit.get("attending_provider")
    key = f"{visit.get('practice_id')}/{visit.get('patient_id')}/{visit.get('encounter_id')}"
    text = f"{when or '?'}" + (f" with {provider}" if provider else "")

    def finding(assessment: str, excerpt: str) -> Finding:
        return Finding(
            "last completed visit", assessment, "Encounter", key, provider, observed_at=when, excerpt=excerpt
        )

    if rule is None:
        return finding("info", text), None
    if age is None or age > rule.visit_within_days:
        return finding("stale", f"{text}; the protocol wants one within {rule.visit_within_days} days"), "visit_too_old"
    return finding("met", text), None


def _order_finding(order: Mapping[str, Any], assessment: str, note: str, last_filled: str | None) -> Finding:
    get = order.get
    med = get("medication") or {}
    display = str(med.get("display") or med.get("code") or "")
    dose, written, status, quantity, refills = (
        get("dose"),
        get("written_at"),
        get("status"),
        get("quantity"),
        get("refills"),
    )
    parts = [display or "?"]
    if dose:
        parts.append(f"dose {dose} {get('dose_units') or ''}".rstrip())
    if quantity:
        parts.append(f"qty {quantity}")
    if refills is not None:
        parts.append(f"refills left {refills}")
    if written:
        parts.append(f"written {written}")
    if last_filled:
        parts.append(f"last fill {last_filled}")
    if status:
        parts.append(f"status {status}")
    if note:
        parts.append(note)
    return Finding(
        "medication order",
        assessment,
        "MedicationOrder",
        f"{get('practice_id')}/{get('patient_id')}/{get('order_id')}",
        display,
        None,
        None,
        (),
        written,
        "; ".join(parts),
    )


def _is_active(order: Mapping[str, Any]) -> bool:
    return str(order.get("status") or "").upper() not in _INACTIVE_ORDER


def _match_orders(
    ctx: PatientContext, ident: Identification, code: str | None, rules: RefillRules
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(active orders, inactive orders) of the same ingredients (or the same product code)."""
    want = ident.ingredient_set
    active: list[Mapping[str, Any]] = []
    inactive: list[Mapping[str, Any]] = []
    for o in ctx.medication_orders.values():
        med = o.get("medication") or {}
        same = bool(code) and med.get("code") == code
        if not same and want:
            oid = rules.drugs.identify(med.get("display"), med.get("code"))
            same = oid.ingredient_set == want
        if same:
            (active if _is_active(o) else inactive).append(o)
    key = lambda o: (str(o.get("written_at") or ""), str(o.get("order_id") or ""))  # noqa: E731
    return sorted(active, key=key, reverse=True), sorted(inactive, key=key, reverse=True)


def triage(
    request: Mapping[str, Any], ctx: PatientContext, rules: RefillRules, now: int, context_current: bool = True
) -> Triage:
    """Classify one refill request (see the module docstring for the classes and their order).

    ``context_current=False`` (the context tables had not caught up when the request was read)
    is never routine: a discontinued order or a new abnormal lab may not be folded in yet.
    Fail closed."""
    today = _today(now)
    code = request.get("medication_code") or None
    ident = rules.drugs.identify(request.get("medication"), code)
    if not ident.identified and code:
        # a product code the table does not hold, but the chart's order carries the same code:
        # the order's medication names the drug (RxNorm SCD names carry ingredient + strength)
        for o in ctx.medication_orders.values():
            med = o.get("medication") or {}
            if med.get("code") == code and med.get("display"):
                by_order = rules.drugs.identify(str(med["display"]), code)
                if by_order.identified:
                    ident = replace(by_order, method="rxnorm_order", unrecognised=ident.unrecognised)
                break
    reasons: list[str] = []
    missing: list[str] = []
    findings: list[Finding] = []
    name = request.get("medication")
    findings.append(
        Finding(
            "requested drug",
            "info" if ident.identified else "missing",
            value=name,
            excerpt=rules.drugs.describe(ident, name),
        )
    )

    # -- which rule decides: controlled first, then identification, then the class protocol
    controlled = ident.controlled
    covered = [e for e in ident.ingredients if not e.schedule]
    rule: RefillRule | None = None
    policy: Policy | None = None
    drug_class: str | None = None
    if controlled:
        policy = POLICIES["controlled"]
        reasons.append("controlled_substance")
        for e in controlled:
            findings.append(
                Finding(
                    "controlled substance",
                    "not_met",
                    value=e.ingredient,
                    excerpt=f"{e.ingredient}: DEA schedule {e.schedule[1:] if e.schedule else '?'} ({e.citation})",
                )
            )
    elif not ident.identified:
        policy = POLICIES["unidentified"]
        reasons.append("drug_not_identified")
        missing.append("a drug the drug table knows")
    elif len(covered) > 1:
        policy = POLICIES["no_protocol"]
        reasons.append("combination_product")
    else:
        drug_class = covered[0].drug_class
        rule = rules.by_class.get(drug_class) if drug_class else None
        if rule is None:
            policy = POLICIES["no_protocol"]
            reasons.append("no_protocol")
    if ident.unrecognised and "drug_not_identified" not in reasons:
        reasons.append("unrecognised_words")

    # -- the order: an active order of the same drug and strength
    active, inactive = _match_orders(ctx, ident, code, rules) if ident.identified or code else ([], [])
    order: Mapping[str, Any] | None = None
    last_filled = request.get("last_filled")
    if active:
        wanted = ident.strength
        same = [o for o in active if wanted is None or ((s := order_strength(o)) is not None and s.same_as(wanted))]
        strengths = {(s.text if (s := order_strength(o)) else "") for o in same}
        if wanted is None and len(strengths) > 1:
            # the request names no strength and the patient has active orders of several
            reasons.append("order_ambiguous")
            for o in same[:3]:
                findings.append(_order_finding(o, "mismatch", "one of several active orders of this drug", last_filled))
        elif same:
            order = same[0]
            findings.append(_order_finding(order, "met", "", last_filled))
        else:
            reasons.append("strength_mismatch")
            for o in active[:3]:
                s = order_strength(o)
                note = f"request says {wanted.text if wanted else '?'}, order {s.text if s else 'has no strength'}"
                findings.append(_order_finding(o, "mismatch", note, last_filled))
    elif inactive:
        reasons.append("order_not_active")
        findings.append(_order_finding(inactive[0], "not_met", "this order is not active", last_filled))
    elif ident.identified:
        reasons.append("no_active_order")
        missing.append("an active order for this drug")
        findings.append(Finding("medication order", "missing", excerpt="no order for this drug on record"))

    # -- the visit
    visit = _last_visit(ctx, today)
    vf, visit_reason = _visit_finding(visit, rule, today)
    findings.append(vf)
    if visit_reason:
        reasons.append(visit_reason)
        missing.append(f"a completed visit within {rule.visit_within_days} days" if rule else "a completed visit")
    elif rule is None and visit is None:
        missing.append("a completed visit")

    # -- monitoring labs and vitals
    if rule is not None:
        for m in rules.plans[rule.drug_class]:
            f, why, miss = _check_monitoring(ctx, m, today)
            findings.append(f)
            if why:
                reasons.append(why)
            if miss:
                missing.append(miss)

    # -- what the step cannot vouch for: a context that had not caught up
    if not context_current:
        reasons.append("context_not_current")
        findings.append(
            Finding("patient context", "missing", excerpt="the chart data had not caught up when this was triaged")
        )

    # -- the class: fail closed first, then the visit, then monitoring
    if not _REVIEW_FIRST.isdisjoint(reasons) or rule is None:
        klass = NEEDS_REVIEW
    elif visit_reason:
        klass = NEEDS_VISIT
    elif reasons:
        klass = NEEDS_REVIEW
    else:
        klass = ROUTINE
    if policy is not None:
        rid, rver, rsrc = policy.id, policy.version, policy.source
        if policy is POLICIES["controlled"]:
            rver = f"{policy.version}+{rules.controlled_table_version}"
    else:
        assert rule is not None  # noqa: S101 - rule is None only with a policy (see above)
        rid, rver, rsrc = rule.id, rule.version, rule.source
    return Triage(
        triage_class=klass,
        rule_id=rid,
        rule_version=rver,
        rule_source=rsrc,
        reasons=tuple(reasons),
        missing=tuple(missing),
        findings=tuple(findings),
        identification=ident,
        drug_class=drug_class,
        order=order,
        last_visit=visit,
    )


def summarize(t: Triage) -> str:
    """One line for titles and audit reasons (no PHI: classes, codes, the rule)."""
    why = ", ".join(t.reasons) if t.reasons else "all protocol conditions met"
    return f"{t.triage_class} by {t.rule_id}@{t.rule_version}: {why}"


def reason_text(reasons: Sequence[str]) -> str:
    return ", ".join(r.replace("_", " ") for r in reasons)
