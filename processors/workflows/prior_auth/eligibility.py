"""A 271 that says a service needs authorization (EB11 = Y) -> a prior-authorization work item.

``on_eligibility(response, ...)`` is pure. For each benefit of the payer's eligibility answer
(``EligibilityResponse``, processors/x12/eligibility_271.py) with ``authorization_required``
and each of its EB03 service types, the eligibility rule (``rules/prior_auth/eligibility.yaml``,
kind ``eligibility_rule``) that covers the payer and service type decides whether a person
is told. The item says "the payer says authorization is required for <service type>", with
the 271 benefit as evidence and the rule's id and version; it names the patient's open
orders for that service type (their code's payer rule has that X12 service type), and then
goes to the **clinician** queue (the ordering provider's: an order is waiting), else to
**billing** (the office requests authorizations before the service is booked).

No duplicates: nothing when an authorization for the patient and that payer is already
drafted or pended (the order's own sign-off item covers it), and nothing when the item
exists already (ids from practice, patient, payer and service type, never time): a replayed
271, or the next eligibility check of the same plan, adds nothing.

The upgrade's backlog (review s20 S6): the prior-auth agent reads ``norm.eligibility``, a topic
nobody committed before, from its log start (30 days). Those 271s are old eligibility checks for
services long booked or done; an item for each would flood the queues. So a 271 received before
``since`` (the agent's cut-off for its partition, kept by the shell) gets an audit entry
(``prior_auth_payer_requires_backlog``) and no item.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from practiceflow.processors.base import entity_key
from practiceflow.processors.context.snapshot import PatientContext
from practiceflow.processors.workflows.prior_auth.detect import is_active, order_code
from practiceflow.processors.workflows.prior_auth.rules import PriorAuthRule, PriorAuthRules
from practiceflow.processors.workflows.step import AuditReason, StepResult
from practiceflow.processors.workflows.workitem import by_rule, evidence, item_id_for, new_item, option

if TYPE_CHECKING:
    from practiceflow.schemas.typed import EvidenceDict, HandoffItemDict

WORKFLOW: Final = "prior_auth"
KIND: Final = f"{WORKFLOW}.payer_requires"
#: an authorization in these states already covers the patient and payer
OPEN_STATES: Final = frozenset({"drafted", "pended"})
#: the X12 service type codes (EB03) practices meet most, for the item's title
SERVICE_TYPES: Final = {
    "1": "medical care",
    "2": "surgical",
    "4": "diagnostic X-ray",
    "5": "diagnostic lab",
    "12": "durable medical equipment purchase",
    "18": "durable medical equipment rental",
    "30": "health benefit plan coverage",
    "33": "chiropractic",
    "35": "dental care",
    "42": "home health care",
    "47": "hospital",
    "48": "hospital inpatient",
    "50": "hospital outpatient",
    "62": "MRI/CAT scan",
    "73": "diagnostic medical",
    "86": "emergency services",
    "88": "pharmacy",
    "98": "professional (physician) visit - office",
    "A4": "psychiatric",
    "AD": "occupational therapy",
    "AE": "physical medicine",
    "BZ": "physician visit - office: sick",
    "DM": "durable medical equipment",
    "MH": "mental health",
    "PT": "physical therapy",
    "UC": "urgent care",
}


def service_label(code: str) -> str:
    name = SERVICE_TYPES.get(code)
    return f"{name} ({code})" if name else f"service type {code}"


def payer_key(response: Mapping[str, Any]) -> str:
    """The payer as the item's id knows it: its id, else its name (lower case)."""
    return str(response.get("payer_id") or response.get("payer_name") or "unknown-payer").strip().lower()


def _same_payer(state: Mapping[str, Any], response: Mapping[str, Any]) -> bool:
    theirs = {str(response.get(k) or "").strip().lower() for k in ("payer_id", "payer_name")} - {""}
    ours = {str(state.get(k) or "").strip().lower() for k in ("payer_id", "payer_name")} - {""}
    return bool(theirs & ours)


def item_id(practice_id: str, patient_id: str, response: Mapping[str, Any], service_type: str) -> str:
    return item_id_for(WORKFLOW, "eligibility", practice_id, patient_id, payer_key(response), service_type)


def required(response: Mapping[str, Any], rules: PriorAuthRules) -> list[tuple[str, PriorAuthRule, Mapping[str, Any]]]:
    """(service type, rule, benefit) for each service type the 271 says needs authorization and a
    rule covers, first benefit per service type. A benefit without EB03 is the plan's (type 30)."""
    payer = [str(response.get("payer_id") or ""), str(response.get("payer_name") or "")]
    out: dict[str, tuple[str, PriorAuthRule, Mapping[str, Any]]] = {}
    for b in response.get("benefits") or ():
        if b.get("authorization_required") is not True:
            continue
        for st in [str(t).strip().upper() for t in (b.get("service_types") or ())] or ["30"]:
            if st in out:
                continue
            rule = rules.eligibility_rule(service_type=st, payer=payer)
            if rule is not None and rule.needs_auth:
                out[st] = (st, rule, b)
    return list(out.values())


def open_orders_for(
    ctx: PatientContext | None, service_type: str, rules: PriorAuthRules, payer: Sequence[str]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The patient's active orders whose code's payer rule carries ``service_type`` (record type, order)."""
    if ctx is None:
        return []
    found: list[tuple[str, Mapping[str, Any]]] = []
    pairs: Iterable[tuple[str, Mapping[str, Any]]] = [
        *(("Order", o) for o in ctx.orders.values()),
        *(("MedicationOrder", m) for m in ctx.medication_orders.values()),
    ]
    for rt, o in pairs:
        if not is_active(o):
            continue
        code, _kind, display = order_code(rt, o)
        rule = rules.match(codes=[code] if code else [], names=[display] if display else [], payer=payer)
        if rule is not None and rule.service_type.upper() == service_type:
            found.append((rt, o))
    return sorted(found, key=lambda p: str(p[1].get("order_id") or p[1].get("medication_order_id") or ""))


def on_eligibility(
    response: Mapping[str, Any],
    *,
    patient_id: str,
    ctx: PatientContext | None,
    authorizations: Sequence[Mapping[str, Any]],
    existing_items: Container[str],
    rules: PriorAuthRules,
    now: int,
    since: int | None = None,
) -> StepResult:
    """See the module docstring. ``authorizations`` are the patient's authorization states,
    ``existing_items`` the item ids already issued (the work-items table); ``now`` is when the
    271 was received, ``since`` the cut-off before which a 271 is backlog (audit only)."""
    pid = str(response["practice_id"])
    needs = required(response, rules)
    if not needs or not patient_id:
        return StepResult()
    if since is not None and now < since:
        audit = AuditReason(
            "prior_auth_payer_requires_backlog",
            "EligibilityResponse",
            str(response.get("response_id")),
            "the 271 says authorization is required, but it was received before the prior-auth agent's cut-off "
            "(upgrade backlog): no item",
            details={"service_types": ",".join(st for st, _r, _b in needs), "cutoff": str(since)},
        )
        return StepResult(audit=(audit,))
    payer_name = str(response.get("payer_name") or response.get("payer_id") or "the payer")
    covered = [a for a in authorizations if a.get("status") in OPEN_STATES and _same_payer(a, response)]
    if covered:
        audit = AuditReason(
            "prior_auth_payer_requires_covered",
            "EligibilityResponse",
            str(response.get("response_id")),
            f"the 271 says authorization is required; {len(covered)} authorization(s) for this payer already open",
            details={"service_types": ",".join(st for st, _r, _b in needs)},
        )
        return StepResult(audit=(audit,))
    payer = [str(response.get("payer_id") or ""), str(response.get("payer_name") or "")]
    items: list[HandoffItemDict] = []
    audit_out: list[AuditReason] = []
    for st, rule, benefit in needs:
        iid = item_id(pid, patient_id, response, st)
        if iid in existing_items:
            continue
        orders = open_orders_for(ctx, st, rules, payer)
        label = service_label(st)
        head = evidence(
            f"271 benefit: authorization required for {label}",
            record_type="EligibilityResponse",
            record_key=entity_key(pid, patient_id, str(response.get("response_id"))),
            value="EB11 Y",
            assessment="authorization_required",
            ref=f"{rule.id}@{rule.version}",
            excerpt=(
                f"{payer_name}: EB01 {benefit.get('info_code')}, service type {st}"
                + (f", {benefit.get('plan_description')}" if benefit.get("plan_description") else "")
                + (f" ({'; '.join(benefit.get('messages') or [])})" if benefit.get("messages") else "")
                + ", authorization or certification required (EB11 Y)"
            )[:500],
        )
        ev: list[EvidenceDict] = [head]
        for rt, o in orders:
            code, _k, display = order_code(rt, o)
            oid = str(o.get("order_id") or o.get("medication_order_id") or "")
            ev.append(
                evidence(
                    f"open order: {display or code} ({code})",
                    record_type=rt,
                    record_key=entity_key(pid, patient_id, oid),
                    value=code,
                    assessment="needs_authorization",
                    observed_at=str(o.get("ordered_at") or o.get("written_at") or "") or None,
                    excerpt=f"ordered by {o.get('ordering_provider') or o.get('prescriber') or 'unknown'}"[:500],
                )
            )
        first = orders[0][1] if orders else None
        items.append(
            new_item(
                practice_id=pid,
                workflow=WORKFLOW,
                subject=("eligibility", pid, patient_id, payer_key(response), st),
                kind=KIND,
                queue="clinician" if orders else "billing",
                title=f"Payer says authorization is required for {label} ({payer_name})",
                what_happened=f"{payer_name}'s eligibility answer (271) says {label} needs prior authorization "
                f"(rule {rule.id}@{rule.version}); no authorization for this patient and payer is drafted or pending."
                + (f" Open order(s): {len(orders)}." if orders else " No open order for it is on file."),
                produced_by=by_rule(rule.id, rule.version, rule.source),
                source=dict(response.get("source") or {}),  # type: ignore[arg-type]  # a SourceRef record
                now=now,
                patient_id=patient_id,
                subject_type=orders[0][0] if orders else "EligibilityResponse",
                subject_id=str((first or {}).get("order_id") or response.get("response_id") or ""),
                decision_needed="Request the authorization before the service (or confirm none is planned).",
                evidence=ev,
                options=[
                    option("acknowledge", "Seen; authorization requested or not needed"),
                    option("escalate", "Hand to the billing office" if orders else "Hand to the ordering clinician"),
                ],
            )
        )
        audit_out.append(
            AuditReason(
                "prior_auth_payer_requires",
                "EligibilityResponse",
                str(response.get("response_id")),
                f"{rule.id}@{rule.version}: EB11 Y for service type {st}",
                details={"service_type": st, "orders": str(len(orders))},
            )
        )
    return StepResult(work_items=tuple(items), audit=tuple(audit_out))
