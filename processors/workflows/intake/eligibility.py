"""Read a clearinghouse's answer into exactly one outcome: eligible, not eligible, could not determine.

The answer is a ``CommandResult`` (``streams/commands/eligibility.py``): ``ok`` with the
271 as payload, or ``timeout`` / ``failed`` / ``refused`` with a reason. The 271 is read by
the project's own X12 reader (``processors/x12/normalize.py``, the hot path), never here.

Order of the decision, each step ending it:

1. No 271 (the connector timed out, the clearinghouse was down after every retry, it
   refused the request) -> **could not determine**, reason as the executor gave it.
2. A 271 we cannot read, or one without an answer for our inquiry -> **could not determine**.
3. AAA reject reasons (any level) -> each looked up in ``rules/intake/aaa_reject_reasons``;
   an unknown code -> **could not determine**; a code the table calls ``not_eligible``
   (subscriber not found, ...) -> **not eligible**; else **could not determine**. The
   AAA04 follow-up action is quoted with each.
4. No coverage status at all (no EB01 1-8) -> **could not determine**.
5. The gap rules (``rules/intake/gaps.yaml``), in file order; every rule that fires is a
   :class:`Gap`. A fired rule whose ``outcome`` is ``not_eligible`` (inactive, plan ended
   before the appointment) makes the check **not eligible**; otherwise the patient is
   **eligible** (a high deductible or a prior authorization is work, not ineligibility).
   No gap -> **eligible** and clean (rule ``intake.clean``).

Benefits are read for the service type asked (EQ01, default 30) and for benefits that name
no service type (they apply to all), so a gap on another service does not fire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from practiceflow.processors.base import Rejected
from practiceflow.processors.workflows.intake.rules import GapRule, IntakeRules
from practiceflow.processors.x12.normalize import normalize_x12

__all__ = ["Determination", "Fact", "Gap", "determine", "gaps_for", "read_271"]

ACTIVE = frozenset({"1", "2", "3", "4", "5"})
INACTIVE = frozenset({"6", "7", "8"})
# EB01 5 "Active - Pending Investigation": the payer itself is not sure; never a clean result
PENDING = frozenset({"5"})


@dataclass(frozen=True)
class Fact:
    """One piece of the 271 a decision used (becomes typed evidence on the work item)."""

    label: str
    value: str
    observed_at: str | None = None
    assessment: str = "info"


@dataclass(frozen=True)
class Gap:
    rule: GapRule
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class Determination:
    """The one outcome of a check, why, and what the front desk should do."""

    outcome: str  # eligible | not_eligible | could_not_determine
    reason_code: str  # e.g. clean, gap, aaa:75, timeout, unknown_payer, unreadable_271
    reason: str
    follow_up: str = ""
    gaps: tuple[Gap, ...] = ()
    facts: tuple[Fact, ...] = ()
    response: Mapping[str, Any] | None = None  # the EligibilityResponse record used
    rule_id: str = ""
    rule_version: str = ""
    rule_source: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def read_271(payload: str | bytes, practice_id: str, trace_number: str | None) -> Mapping[str, Any] | None:
    """The EligibilityResponse answering ``trace_number`` (TRN*2 echoes our TRN*1), else the first.

    Raises :class:`Rejected` when the payload is not a readable 271."""
    raw = payload.encode() if isinstance(payload, str) else payload
    result = normalize_x12(raw, practice_id, 0)
    responses = [r.value for r in result.records if r.record_type == "EligibilityResponse"]
    if not responses:
        return None
    if trace_number:
        for r in responses:
            if (r.get("trace_number") or "").upper() == trace_number.upper():
                return r
    return responses[0]


def _applies(benefit: Mapping[str, Any], service_type: str) -> bool:
    types = benefit.get("service_types") or []
    return not types or service_type in types


def _benefit_label(b: Mapping[str, Any]) -> str:
    bits = [f"EB01 {b.get('info_code')}"]
    if b.get("service_types"):
        bits.append("service " + "^".join(b["service_types"]))
    if b.get("plan_description"):
        bits.append(str(b["plan_description"]))
    return ", ".join(bits)


def gaps_for(response: Mapping[str, Any], rules: IntakeRules, service_type: str, visit_date: str | None) -> list[Gap]:
    """Every gap rule that fires on an *active* response, in rule order."""
    benefits = [b for b in response.get("benefits") or [] if _applies(b, service_type)]
    out: list[Gap] = []
    for rule in rules.gaps:
        facts: list[Fact] = []
        if rule.check == "inactive":
            if response.get("active") is False:
                facts = [Fact(_benefit_label(b), "inactive", assessment="not_met") for b in benefits]
                facts = facts or [Fact("coverage status", "inactive", assessment="not_met")]
        elif rule.check == "plan_ended" and visit_date:
            end, begin = response.get("plan_end"), response.get("plan_begin")
            if end and end < visit_date:
                facts = [Fact("plan end (DTP*347)", end, end, "not_met"), Fact("appointment date", visit_date)]
            elif begin and begin > visit_date:
                facts = [Fact("plan begin (DTP*346)", begin, begin, "not_met"), Fact("appointment date", visit_date)]
        elif rule.check == "out_of_network":
            flags = {b.get("in_network") for b in benefits if b.get("in_network")}
            if "N" in flags and not flags & {"Y", "W"}:
                facts = [
                    Fact(_benefit_label(b), "EB12 N (out of network)", assessment="not_met")
                    for b in benefits
                    if b.get("in_network") == "N"
                ]
        elif rule.check == "not_covered":
            facts = [
                Fact(_benefit_label(b), "non-covered", assessment="not_met")
                for b in benefits
                if b.get("info_code") == "I"
            ]
        elif rule.check == "prior_auth":
            facts = [
                Fact(_benefit_label(b), "EB11 Y (authorization required)", assessment="not_met")
                for b in benefits
                if b.get("authorization_required") is True
            ]
        elif rule.check == "deductible_remaining":
            limit = rule.threshold if rule.threshold is not None else 0.0
            facts = [
                Fact(f"{_benefit_label(b)} remaining", f"{b['amount']:.2f} USD", assessment="not_met")
                for b in benefits
                if b.get("info_code") == "C"
                and b.get("time_period") == "29"
                and b.get("amount") is not None
                and b.get("in_network") != "N"
                and b["amount"] >= limit
            ]
        elif rule.check == "coordination_of_benefits":
            facts = [
                Fact(_benefit_label(b), "other or additional payer", assessment="info")
                for b in response.get("benefits") or []
                if b.get("info_code") == "R"
            ]
        if facts:
            out.append(Gap(rule, tuple(facts)))
    return out


def _aaa(response: Mapping[str, Any], rules: IntakeRules, table_version: str) -> Determination:
    codes = list(response.get("rejections") or [])
    actions = list(response.get("follow_up_actions") or [])
    facts: list[Fact] = []
    follow: list[str] = []
    outcome = "could_not_determine"
    for i, code in enumerate(codes):
        action = actions[i] if i < len(actions) else ""
        action_text = rules.follow_up_actions.get(action, "")
        known = rules.aaa.get(code)
        meaning = known.meaning if known else "reject reason not in the practice's table"
        facts.append(
            Fact(
                f"AAA03 {code}" + (f", AAA04 {action}" if action else ""),
                meaning + (f" ({action_text})" if action_text else ""),
                assessment="not_met",
            )
        )
        if known is None:
            follow.append(f"Reject reason {code} is not in rules/intake/aaa_reject_reasons.yaml: call the payer.")
            continue
        follow.append(known.follow_up)
        if known.outcome == "not_eligible" and all(c in rules.aaa for c in codes):
            outcome = "not_eligible"
    return Determination(
        outcome=outcome,
        reason_code="aaa:" + ",".join(codes),
        reason="the payer rejected the inquiry: " + "; ".join(f.value for f in facts),
        follow_up=" ".join(dict.fromkeys(follow)),
        facts=tuple(facts),
        response=response,
        rule_id="intake.aaa",
        rule_version=table_version,
        rule_source="ASC X12 005010X279A1 AAA segments; X12 elements 901 and 889",
    )


def determine(
    result: Mapping[str, Any],
    rules: IntakeRules,
    *,
    trace_number: str | None,
    service_type: str,
    visit_date: str | None,
) -> Determination:
    """The outcome of one check from its ``CommandResult`` (see the module docstring)."""
    exec_outcome = result.get("outcome")
    practice_id = str(result.get("practice_id") or "")
    if exec_outcome != "ok":
        reason = str(result.get("reason") or exec_outcome or "no answer")
        code = str(exec_outcome or "failed")
        return Determination(
            "could_not_determine",
            code,
            f"the eligibility check did not complete ({code}): {reason}",
            follow_up="Re-check later or call the payer; confirm coverage before the visit.",
            rule_id="intake.could_not_determine",
            rule_version="1",
            rule_source="practiceflow intake workflow: a check that cannot complete ends with its reason",
        )
    try:
        response = read_271(result.get("payload") or "", practice_id, trace_number)
    except Rejected as exc:
        return Determination(
            "could_not_determine",
            "unreadable_271",
            f"the clearinghouse's answer is not a readable 271 ({exc.reason_code}: {exc.reason})",
            follow_up="Call the payer; report the clearinghouse answer to the practice's administrator.",
            rule_id="intake.could_not_determine",
            rule_version="1",
            rule_source="practiceflow intake workflow",
        )
    if response is None:
        return Determination(
            "could_not_determine",
            "no_response_in_271",
            "the 271 holds no answer for this inquiry",
            follow_up="Call the payer.",
            rule_id="intake.could_not_determine",
            rule_version="1",
            rule_source="practiceflow intake workflow",
        )
    if response.get("rejections"):
        return _aaa(response, rules, rules.versions.get("intake.aaa", "1"))
    codes = {str(b.get("info_code")) for b in response.get("benefits") or []}
    if codes & ACTIVE and codes & INACTIVE:
        return Determination(
            "could_not_determine",
            "mixed_coverage_status",
            "the 271 reports both active (EB01 "
            + ",".join(sorted(codes & ACTIVE))
            + ") and inactive (EB01 "
            + ",".join(sorted(codes & INACTIVE))
            + ") coverage",
            follow_up="Call the payer to learn which plan covers the visit; re-check with it.",
            facts=tuple(
                Fact(_benefit_label(b), "active" if b.get("info_code") in ACTIVE else "inactive", assessment="not_met")
                for b in response.get("benefits") or []
                if b.get("info_code") in ACTIVE | INACTIVE
            ),
            response=response,
            rule_id="intake.could_not_determine",
            rule_version="1",
            rule_source="005010X279A1 EB01 codes 1-5 (active) and 6-8 (inactive) in one answer",
        )
    if codes & PENDING:
        return Determination(
            "could_not_determine",
            "pending_investigation",
            "the payer reports coverage as active pending investigation (EB01 5)",
            follow_up="Call the payer to confirm coverage before the visit; re-check after their investigation.",
            facts=tuple(
                Fact(_benefit_label(b), "active - pending investigation", assessment="not_met")
                for b in response.get("benefits") or []
                if b.get("info_code") in PENDING
            ),
            response=response,
            rule_id="intake.could_not_determine",
            rule_version="1",
            rule_source="005010X279A1 EB01 code 5 Active - Pending Investigation",
        )
    if response.get("active") is None:
        return Determination(
            "could_not_determine",
            "no_coverage_status",
            "the 271 gives no coverage status (no EB01 1-8)",
            follow_up="Call the payer to confirm coverage.",
            response=response,
            rule_id="intake.could_not_determine",
            rule_version="1",
            rule_source="005010X279A1 EB01 codes 1-8",
        )
    gaps = gaps_for(response, rules, service_type, visit_date)
    if not gaps:
        clean = rules.gap("clean")
        return Determination(
            "eligible",
            "clean",
            "active coverage and no gap rule fired",
            follow_up=clean.follow_up,
            response=response,
            rule_id=clean.id,
            rule_version=clean.version,
            rule_source=clean.source,
        )
    blocking = [g for g in gaps if g.rule.outcome == "not_eligible"]
    first = blocking[0] if blocking else gaps[0]
    return Determination(
        "not_eligible" if blocking else "eligible",
        "gap:" + ",".join(g.rule.check for g in gaps),
        "; ".join(g.rule.title for g in gaps),
        follow_up=" ".join(g.rule.follow_up for g in gaps),
        gaps=tuple(gaps),
        response=response,
        rule_id=first.rule.id,
        rule_version=first.rule.version,
        rule_source=first.rule.source,
    )


def summary_facts(response: Mapping[str, Any] | None) -> Sequence[Fact]:
    """Payer, plan and plan dates from the response (shown on every item of a check)."""
    if not response:
        return ()
    facts = [Fact("payer", f"{response.get('payer_name') or ''} ({response.get('payer_id') or '?'})")]
    status = response.get("active")
    facts.append(Fact("coverage status", "active" if status else ("inactive" if status is False else "unknown")))
    plans = [b.get("plan_description") for b in response.get("benefits") or [] if b.get("plan_description")]
    if plans:
        facts.append(Fact("plan", str(plans[0])))
    if response.get("plan_begin") or response.get("plan_end"):
        facts.append(Fact("plan dates", f"{response.get('plan_begin') or '?'} to {response.get('plan_end') or 'open'}"))
    return tuple(facts)
