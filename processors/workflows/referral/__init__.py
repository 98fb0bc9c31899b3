"""Incoming referrals: one work item, whichever way the referral arrived (pure).

A referral reaches a practice as a fax (classified and split by ``processors/workflows/fax``)
or as an HL7 REF^I12 (normalized into an ``Order`` for the referral by
``processors/hl7/normalize.py``). Staff should not care which: both become the same work
item, built here, in the ``referrals`` queue (workflow ``referral``, kind
``referral.incoming``), with the referral's evidence attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, entity_key
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option

__all__ = ["referral_item", "hl7_referral_handoffs", "RULE"]

WORKFLOW = "referral"
KIND = "referral.incoming"
RULE = ("referral.incoming", "1")
_PRIORITY = {"S": "urgent", "STAT": "urgent", "A": "urgent", "U": "high", "URGENT": "high", "R": "routine"}


def referral_item(
    *,
    practice_id: str,
    subject: Sequence[str],
    patient_id: str | None,
    title: str,
    what_happened: str,
    source: dict[str, Any],
    evidence_: Sequence[Any],
    now: int,
    priority: str = "routine",
    produced_by: Any = None,
    subject_type: str,
    subject_id: str,
    actions_taken: Sequence[str] = (),
) -> Any:
    """The referral work item every channel builds (queue ``referrals``)."""
    return new_item(
        practice_id=practice_id,
        workflow=WORKFLOW,
        subject=tuple(subject),
        kind=KIND,
        queue="referrals",
        title=title,
        what_happened=what_happened,
        produced_by=produced_by or by_rule(*RULE),
        source=source,  # type: ignore[arg-type]
        now=now,
        priority=priority,
        patient_id=patient_id,
        subject_type=subject_type,
        subject_id=subject_id,
        decision_needed="Schedule the referred patient, or tell the referring provider why not.",
        actions_taken=list(actions_taken),
        evidence=list(evidence_),
        options=[option("assign", "take the referral"), option("acknowledge", "scheduled")],
    )


def hl7_referral_handoffs(result: NormalizeResult, practice_id: str, created_at: int) -> list[Normalized]:
    """REF^I12: the referral ``Order`` becomes the same work item as a faxed referral."""
    if not (result.message_type or "").startswith("REF^"):
        return []
    out: list[Normalized] = []
    for rec in result.records:
        if rec.record_type != "Order":
            continue
        v = rec.value
        code = v.get("code") or {}
        ev = [
            evidence(
                "referral", record_type="Order", record_key=rec.key, value=code.get("display") or code.get("code")
            ),
            *(
                evidence("diagnosis", record_type="Order", record_key=rec.key, value=d.get("display") or d.get("code"))
                for d in v.get("diagnoses") or []
            ),
        ]
        if v.get("ordering_provider"):
            ev.append(evidence("referring provider", value=v["ordering_provider"], record_type="Order"))
        item = referral_item(
            practice_id=practice_id,
            subject=("order", v["order_id"]),
            patient_id=v.get("patient_id"),
            title="Incoming referral (HL7 REF^I12)",
            what_happened=f"An HL7 referral arrived from {v.get('ordering_provider') or 'an unnamed provider'}.",
            source=dict(v["source"]),
            evidence_=ev,
            now=created_at,
            priority=_PRIORITY.get(str(v.get("priority") or "").upper(), "routine"),
            subject_type="Order",
            subject_id=v["order_id"],
            actions_taken=["referral recorded from HL7 REF^I12"],
        )
        out.append(Normalized("HandoffItem", entity_key(practice_id, item["item_id"]), dict(item)))
    return out
