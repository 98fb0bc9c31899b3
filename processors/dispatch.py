"""Which normalizer handles which feed, and which handoff rules follow (pure).

The fax feed is absent on purpose: OCR is I/O, so the streaming layer runs it and
then calls ``processors.fax.normalize.normalize_fax`` with the OCR result.

Patient identity: ``normalize_raw`` takes the practices' identity policies (the
settings' ``patient_id_policy``; None = the default MR/MRN/PI/PT order) and passes
each normalizer its practice's policy, then adds the ``IdentityLink`` records the
message implies (``processors.identity.links``), one rule for every feed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, Rejected
from practiceflow.processors.identity.choose import IdentityPolicy, policy_for


def _hl7(raw: dict[str, Any], policy: IdentityPolicy) -> NormalizeResult:
    from practiceflow.processors.hl7.normalize import normalize_hl7

    return normalize_hl7(raw["payload"], raw["practice_id"], raw["received_at"], policy=policy)


def _x12(raw: dict[str, Any], policy: IdentityPolicy) -> NormalizeResult:
    from practiceflow.processors.x12.normalize import normalize_x12

    return normalize_x12(raw["payload"], raw["practice_id"], raw["received_at"])


def _fhir(raw: dict[str, Any], policy: IdentityPolicy) -> NormalizeResult:
    from practiceflow.processors.fhir.normalize import normalize_fhir

    return normalize_fhir(raw["payload"], raw["practice_id"], raw["received_at"], policy=policy)


def _portal(raw: dict[str, Any], policy: IdentityPolicy) -> NormalizeResult:
    from practiceflow.processors.portal.normalize import normalize_portal

    event_type = (raw.get("headers") or {}).get("event_type")
    if not event_type:
        raise Rejected("missing_event_type", "portal event without an event_type header")
    return normalize_portal(event_type, raw["payload"], raw["practice_id"], raw["received_at"], policy=policy)


NORMALIZERS: dict[str, Callable[[dict[str, Any], IdentityPolicy], NormalizeResult]] = {
    "hl7v2": _hl7,
    "x12": _x12,
    "fhir": _fhir,
    "portal": _portal,
}


def normalize_raw(raw: dict[str, Any], policies: Mapping[str, IdentityPolicy] | None = None) -> NormalizeResult:
    """Normalize one RawMessage dict; raises Rejected for anything unusable.

    ``policies``: practice id -> identity policy (``"*"`` = every other practice).
    """
    from practiceflow.processors.identity.links import links_for

    fn = NORMALIZERS.get(raw["feed"])
    if fn is None:
        raise Rejected("unknown_feed", f"no normalizer for feed {raw['feed']!r}")
    policy = policy_for(policies, raw["practice_id"])
    result = fn(raw, policy)
    result.records.extend(links_for(result, raw["practice_id"], policy))
    return result


def handoffs_for(result: NormalizeResult, practice_id: str, created_at: int) -> list[Normalized]:
    """Handoff items that follow directly from one normalized message, whatever its feed.

    Each rule decides for itself whether the message concerns it (results review: result
    messages and flagged observations from HL7 and FHIR alike), so a feed cannot bypass a
    rule by arriving in another format.
    """
    from practiceflow.processors.handoff.results_review import results_review
    from practiceflow.processors.workflows.fax.handoffs import fax_handoffs
    from practiceflow.processors.workflows.referral import hl7_referral_handoffs

    items: list[Normalized] = []
    items += results_review(result, practice_id, created_at)
    items += fax_handoffs(result, practice_id, created_at)
    items += hl7_referral_handoffs(result, practice_id, created_at)
    return items
