"""Lab results -> a review item for the clinician queue.

Conservative by design: the item states what arrived and which values the sending
lab flagged; it never interprets a value. Deciding what a result means, and what
to do about it, stays with the clinician.
"""

from __future__ import annotations

from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, entity_key

FLAGGED = {"H", "HH", "L", "LL", "A", "AA", "HU", "LU", "<", ">", "CRIT", "C"}
PANIC = {"HH", "LL", "AA", "CRIT", "C"}


def results_review(result: NormalizeResult, practice_id: str, created_at: int) -> list[Normalized]:
    observations = [r.value for r in result.records if r.record_type == "Observation"]
    if not observations:
        return []
    patient_id = observations[0]["patient_id"]
    flagged = [o for o in observations if FLAGGED.intersection(f.upper() for f in o.get("abnormal_flags") or [])]
    panic = any(PANIC.intersection(f.upper() for f in o.get("abnormal_flags") or []) for o in flagged)
    evidence = [
        {
            "label": _label(o),
            "ref": o["observation_id"],
            "excerpt": _excerpt(o),
        }
        for o in (flagged or observations)[:20]
    ]
    item_id = f"results_review:{result.message_id}"
    item = {
        "practice_id": practice_id,
        "item_id": item_id,
        "workflow": "results_review",
        "queue": "clinician",
        "priority": "urgent" if panic else ("high" if flagged else "routine"),
        "title": f"New results: {len(observations)} observation(s), {len(flagged)} flagged by the lab",
        "what_happened": f"{result.message_type} received for patient {patient_id}.",
        "actions_taken": [
            f"Normalized {len(observations)} observation(s) and filed them to the patient's results.",
        ],
        "decision_needed": "Review these results and decide whether follow-up is needed.",
        "patient_id": patient_id,
        "subject_type": "ResultMessage",
        "subject_id": result.message_id,
        "evidence": evidence,
        "created_at": created_at,
        "source": dict(observations[0]["source"]),
    }
    return [Normalized("HandoffItem", entity_key(practice_id, item_id), item)]


def _label(o: dict[str, Any]) -> str:
    code = o.get("code") or {}
    return code.get("display") or code.get("code") or "observation"


def _excerpt(o: dict[str, Any]) -> str:
    parts = [str(o.get("value") or ""), o.get("units") or ""]
    text = " ".join(p for p in parts if p).strip()
    if o.get("reference_range"):
        text += f" (ref {o['reference_range']})"
    if o.get("abnormal_flags"):
        text += f" flag {','.join(o['abnormal_flags'])}"
    return text[:200]
