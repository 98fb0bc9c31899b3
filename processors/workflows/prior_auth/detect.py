"""Which orders need prior authorization: an order (ORM/OML, FHIR ServiceRequest) or a
medication order (RDE/OMP, MedicationRequest) checked against the payer rules.

The payer and plan come from the patient's active coverage on the order's date (the
first by start date, then id, so the choice is stable). No coverage on file still checks
the rules that name "any payer": an order for an MRI needs an authorization whoever pays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from practiceflow.processors.context.snapshot import PatientContext
from practiceflow.processors.workflows.prior_auth.rules import PriorAuthRule, PriorAuthRules

ORDER_TYPES: Final = ("Order", "MedicationOrder")
_INACTIVE: Final = frozenset(
    {"ca", "dc", "oc", "cr", "cancelled", "revoked", "entered-in-error", "stopped", "completed"}
)
_HCPCS_II: Final = re.compile(r"^[A-V][0-9]{4}$")


@dataclass(frozen=True)
class Need:
    """An order that needs authorization, the rule that says so, and the payer it goes to."""

    rule: PriorAuthRule
    code: str
    system: str  # cpt | hcpcs | rxnorm | ndc | local
    display: str | None
    coverage: Mapping[str, Any] | None
    place_of_service: str


def order_code(record_type: str, order: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(code, system kind, display) of what is ordered."""
    coding = (order.get("medication") if record_type == "MedicationOrder" else order.get("code")) or {}
    code = str(coding.get("code") or "").strip()
    system = str(coding.get("system") or "").lower()
    if record_type == "MedicationOrder":
        kind = "ndc" if "ndc" in system else "hcpcs" if _HCPCS_II.match(code.upper()) else "rxnorm"
    elif _HCPCS_II.match(code.upper()):
        kind = "hcpcs"
    elif (code.isdigit() and len(code) == 5) or "cpt" in system or system in ("c4", "cpt4"):
        kind = "cpt"
    else:
        kind = "local"
    return code, kind, coding.get("display")


def primary_coverage(ctx: PatientContext | None, on: str | None) -> Mapping[str, Any] | None:
    if ctx is None:
        return None
    covs = ctx.active_coverages(on[:10] if on else None)
    if not covs:
        return None
    return sorted(covs, key=lambda c: (str(c.get("period_start") or ""), str(c.get("coverage_id"))))[0]


def is_active(order: Mapping[str, Any]) -> bool:
    return not any(str(order.get(f) or "").lower() in _INACTIVE for f in ("control", "status"))


#: the order was withdrawn (not performed): its authorization is cancelled (step._cancel)
_CANCELLED: Final = _INACTIVE - {"completed"}


def is_cancelled(order: Mapping[str, Any]) -> bool:
    """Cancelled, discontinued, stopped or entered in error; a *completed* order is not.

    WHY: a completed order was performed, so its authorization is not withdrawn (and the
    billing office must not be told "the order was cancelled")."""
    return any(str(order.get(f) or "").lower() in _CANCELLED for f in ("control", "status"))


def detect(
    ctx: PatientContext | None,
    record_type: str,
    order: Mapping[str, Any],
    rules: PriorAuthRules,
    *,
    default_place_of_service: str = "11",
) -> Need | None:
    """The need for authorization of ``order``, or None (no rule names it, or the payer exempts it)."""
    if record_type not in ORDER_TYPES or not is_active(order):
        return None
    code, kind, display = order_code(record_type, order)
    when = order.get("ordered_at") or order.get("written_at")
    cov = primary_coverage(ctx, str(when) if when else None)
    pos = str(order.get("place_of_service") or default_place_of_service)
    payer = [str(cov.get("payer_id") or ""), str(cov.get("payer_name") or "")] if cov else []
    rule = rules.match(
        codes=[code] if code else [],
        names=[display] if display else [],
        payer=payer,
        plan=str(cov.get("plan_name") or "") if cov else None,
        place_of_service=pos,
    )
    if rule is None or not rule.needs_auth:
        return None
    return Need(rule, code, kind, display, cov, pos)
