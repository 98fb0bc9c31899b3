"""The sample day's scripted staff: what the people of the practice decide on the day's work items.

Used by ``practiceflow day --pilot``: the workflows run in pilot mode beside these scripted
staff, whose decisions (``StaffDecision``, channel ``scripted``) are compared with the agent's
proposals. The staff do not simply agree: per kind, a realistic share of them sign as proposed,
change, decline, or file a fax somewhere else than it was routed, seeded, so a run is
repeatable and the agreement the report prints is not 100% by construction.
"""

from __future__ import annotations

import hashlib
import random

from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict

# kind prefix -> (option, weight) the staff choose among (only options the item offers count)
BEHAVIOUR: dict[str, tuple[tuple[str, float], ...]] = {
    "refill.routine": (("approve", 0.85), ("edit", 0.10), ("reject", 0.05)),
    "refill.needs_visit": (("reject", 0.75), ("approve", 0.25)),
    "refill.needs_review": (("approve", 0.55), ("reject", 0.35), ("escalate", 0.10)),
    "denials": (("approve", 0.75), ("edit", 0.15), ("reject", 0.10), ("acknowledge", 0.75)),
    "intake": (("acknowledge", 0.80), ("reject", 0.20)),
    "patient_match": (("pick", 0.80), ("new_patient", 0.20)),
}
FAX_MISFILED = 0.15  # share of routed faxes staff file to another queue than the one proposed
_OTHER_QUEUE = {"clinician": "records", "records": "clinician", "billing": "front_desk", "front_desk": "billing"}


def _rng(seed: int, item_id: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}|{item_id}".encode()).digest()[:8], "big"))


def _behaviour(kind: str) -> tuple[tuple[str, float], ...]:
    best = ""
    for prefix in BEHAVIOUR:
        if (kind == prefix or kind.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return BEHAVIOUR.get(best, ())


def decide_as_staff(item: HandoffItemDict, seed: int, now: int) -> StaffDecisionDict | None:
    """The scripted person's decision on one open item, or None when it offers nothing to decide."""
    offered = [o["option"] for o in item.get("options") or []]
    if not offered:
        return None
    rng = _rng(seed, item["item_id"])
    kind = item.get("kind") or item["workflow"]
    edits: dict[str, str] = {}
    choices = [(o, w) for o, w in _behaviour(kind) if o in offered or o == "escalate"]
    if item["workflow"] in ("fax", "referral") or not choices:
        option = next((o for o in ("file", "acknowledge", "reply", "assign", "approve") if o in offered), offered[0])
        if item["workflow"] == "fax" and rng.random() < FAX_MISFILED:
            edits = {"queue": _OTHER_QUEUE.get(item["queue"], "front_desk")}
    else:
        options, weights = zip(*choices, strict=True)
        option = rng.choices(options, weights=weights)[0]
        if option == "edit":
            edits = {"quantity": "30"} if item["workflow"] == "refill" else {"note": "changed"}
    queue = item["queue"]
    digest = hashlib.sha256(f"{seed}|{item['item_id']}".encode()).hexdigest()[:24]
    return {
        "practice_id": item["practice_id"],
        "decision_id": f"scripted:{digest}",
        "item_id": item["item_id"],
        "item_revision": item.get("revision", 1),
        "option": option,
        "actor": f"staff.{queue}",
        "actor_role": queue,
        "edits": edits,
        "comment": None,
        "channel": "scripted",
        "decided_at": now,
    }
