"""Results -> a review item for the clinician queue. One rule for every feed.

The rule (the same for HL7 v2 and FHIR):

* A message gets a review item when it is a result message (HL7 ``ORU^*``) or when any
  of its Observations is flagged by the sender (HL7 OBX-8; FHIR ``Observation.interpretation``
  codes such as ``H``/``L``/``A`` and the critical ``HH``/``LL``/``AA``). Unflagged FHIR
  observations (vital signs the practice recorded itself) need no review.
* Priority: ``urgent`` when a value is flagged critical (``HH``/``LL``/``AA``/``critical``),
  ``high`` when any value is flagged or the result is a correction, else ``routine``.
* One item per result, not per message: the item id is derived from the patient and the
  orders the observations belong to (HL7 ORC/OBR ids, FHIR ``basedOn``), or from the FHIR
  Observation ids, so a corrected result (OBX-11 ``C``, FHIR status ``corrected`` /
  ``amended``) arriving in a later message replaces the first item (same key in the
  compacted handoff topic, same ReplacingMergeTree row) and is marked ``corrected``,
  instead of adding a second item a clinician could act on by mistake. HL7 results without
  an order id fall back to the message id (their observation ids are not unique enough).

Conservative by design: the item states what arrived and which values the sending
lab flagged; it never interprets a value. Deciding what a result means, and what
to do about it, stays with the clinician.
"""

from __future__ import annotations

import hashlib
from typing import Any

from practiceflow.processors.base import Normalized, NormalizeResult, entity_key

FLAGGED = {"H", "HH", "L", "LL", "A", "AA", "HU", "LU", "<", ">", "CRIT", "CRITICAL", "C"}
PANIC = {"HH", "LL", "AA", "CRIT", "CRITICAL", "C"}
CORRECTED = {"C", "CORRECTED", "AMENDED"}  # HL7 table 0085 "C"; FHIR ObservationStatus


def _flags(o: dict[str, Any]) -> set[str]:
    return {f.upper() for f in o.get("abnormal_flags") or [] if f}


def is_corrected(o: dict[str, Any]) -> bool:
    """HL7 OBX-11 ``C`` or FHIR ``corrected``/``amended``: this value replaces one sent before."""
    return str(o.get("status") or "").upper() in CORRECTED


def result_item_id(result: NormalizeResult, observations: list[dict[str, Any]]) -> str:
    """Stable across the original and its correction: patient + orders (or FHIR observation ids)."""
    patient_id = observations[0]["patient_id"]
    orders = sorted({o["order_id"] for o in observations if o.get("order_id")})
    if orders:
        subject = ["order", *orders]
    elif (observations[0].get("source") or {}).get("feed") == "fhir":
        subject = ["observation", *sorted({o["observation_id"].split("/", 1)[0] for o in observations})]
    else:
        subject = ["message", result.message_id]
    digest = hashlib.sha256("\x1f".join([patient_id, *subject]).encode()).hexdigest()[:32]
    return f"results_review:{digest}"


def results_review(result: NormalizeResult, practice_id: str, created_at: int) -> list[Normalized]:
    observations = [r.value for r in result.records if r.record_type == "Observation"]
    if not observations:
        return []
    flagged = [o for o in observations if FLAGGED.intersection(_flags(o))]
    if not (result.message_type.startswith("ORU") or flagged):
        return []
    patient_id = observations[0]["patient_id"]
    panic = any(PANIC.intersection(_flags(o)) for o in flagged)
    corrected = any(is_corrected(o) for o in observations)
    evidence = [
        {
            "label": _label(o),
            "ref": o["observation_id"],
            "excerpt": _excerpt(o),
        }
        for o in (flagged or observations)[:20]
    ]
    item_id = result_item_id(result, observations)
    what = "Corrected results" if corrected else "New results"
    actions = [f"Normalized {len(observations)} observation(s) and filed them to the patient's results."]
    if corrected:
        actions.append("This correction replaces the earlier review item for the same result.")
    item = {
        "practice_id": practice_id,
        "item_id": item_id,
        "workflow": "results_review",
        "queue": "clinician",
        "priority": "urgent" if panic else ("high" if flagged or corrected else "routine"),
        "title": f"{what}: {len(observations)} observation(s), {len(flagged)} flagged by the lab",
        "what_happened": f"{result.message_type} received for patient {patient_id}"
        + (" (corrected result)." if corrected else "."),
        "actions_taken": actions,
        "decision_needed": "Review these results and decide whether follow-up is needed.",
        "patient_id": patient_id,
        "subject_type": "ResultMessage",
        "subject_id": result.message_id,
        "evidence": evidence,
        "created_at": created_at,
        "source": dict(observations[0]["source"]),
        "corrected": corrected,
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
