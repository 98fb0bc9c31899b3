"""The work-item contract: queues, states, options, and the builders every workflow uses.

A work item (Avro ``HandoffItem``, topic ``handoff``, contract version 2) is how the
software hands a person something to decide, with the evidence attached. The rules of the
contract, in one place so every workflow and every staff tool agrees:

* **Identity.** ``item_id`` is derived from the workflow and its subject
  (:func:`item_id_for`), never from time or a counter, so a replay rewrites the same item.
* **Revisions.** Every change (a decision, a supersession) writes the whole item again
  with ``revision + 1``; the topic is compacted by ``practice/item_id`` and a consumer keeps
  the highest revision it has seen. All of one practice's items share a partition, so
  they arrive in the order they were written, per patient included.
* **States.** ``open -> in_progress -> done | rejected | superseded`` (``open`` may go
  straight to any end state). End states are final: a decision on a closed item is
  refused (:class:`InvalidTransition`), and a new item that replaces an old one names it
  in ``supersedes`` while the old one is written once more as ``superseded``.
* **Options.** The decision a person must make is a list of typed options
  (:data:`OPTIONS`); a decision must pick one of the item's own options.
* **Provenance.** Every item names the rule (id, version, source) or the model (name,
  version, prompt version) that produced it in ``produced_by``.

Evolution: fields are only ever added, with defaults (Avro backward compatibility, checked
by tests/schemas); ``contract_version`` says which rules above an item was written under.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

from practiceflow.schemas.typed import (
    DecisionOptionDict,
    EvidenceDict,
    HandoffItemDict,
    ProducedByDict,
    SourceRefDict,
    StaffDecisionDict,
)

CONTRACT_VERSION: Final = 2

QUEUES: Final = (
    "front_desk",  # registration, insurance, scheduling, ambiguous patient matches
    "clinician",  # results, refills needing review, prior-auth sign-off: clinical decisions
    "nurse",  # clinical support work a nurse handles under protocol
    "billing",  # denials, corrected claims, payer correspondence
    "referrals",  # incoming referrals and consult replies
    "records",  # medical records requests, filing
    "triage",  # the software could not tell: a person sorts it (top guesses attached)
    "misdirected",  # not for this practice: a "wrong recipient" reply to the sender
)
PRIORITIES: Final = ("routine", "high", "urgent")
STATES: Final = ("open", "in_progress", "done", "rejected", "superseded")
END_STATES: Final = frozenset({"done", "rejected", "superseded"})
OPTIONS: Final = (
    "approve",  # sign off the proposed action/draft as it stands
    "edit",  # sign off with changes (the decision carries the edits)
    "reject",  # do not do the proposed action
    "acknowledge",  # seen; nothing to sign (results, notices)
    "assign",  # take the item (moves it to in_progress)
    "pick",  # choose one of several candidates (target = candidate id)
    "new_patient",  # none of the candidates: register a new patient
    "reply",  # answer the sender (misdirected fax, records request)
    "file",  # file to the chart / archive without further action
    "escalate",  # hand to another role
)
# The option that ends an item in each end state; everything else but assign ends it done.
_REJECTING: Final = frozenset({"reject"})
_MOVING: Final = frozenset({"assign", "escalate"})


class InvalidTransition(ValueError):
    """A decision the item's state or options do not allow (a closed item, an unknown option)."""


def item_id_for(workflow: str, *subject: str) -> str:
    """A stable item id from the workflow and its subject (patient, request, claim...).

    Hashed so no identifier (an MRN, a member id) appears in the id or the topic key."""
    digest = hashlib.sha256("\x1f".join((workflow, *subject)).encode()).hexdigest()[:32]
    return f"{workflow}:{digest}"


def option(option: str, label: str, target: str | None = None, editable: Sequence[str] = ()) -> DecisionOptionDict:
    if option not in OPTIONS:
        raise ValueError(f"unknown option {option!r}; the contract's options are {', '.join(OPTIONS)}")
    return {"option": option, "label": label, "target": target, "editable_fields": list(editable)}


def by_rule(rule_id: str, version: str, source: str | None = None) -> ProducedByDict:
    return {"kind": "rule", "rule_id": rule_id, "rule_version": version, "rule_source": source}


def by_model(model: str, version: str | None, prompt_version: str | None, confidence: float | None) -> ProducedByDict:
    return {
        "kind": "model",
        "model": model,
        "model_version": version,
        "prompt_version": prompt_version,
        "confidence": confidence,
    }


def evidence(
    label: str,
    *,
    record_type: str | None = None,
    record_key: str | None = None,
    value: str | None = None,
    unit: str | None = None,
    reference_range: str | None = None,
    flags: Iterable[str] = (),
    observed_at: str | None = None,
    assessment: str | None = None,
    document_uri: str | None = None,
    page: int | None = None,
    span: tuple[int, int] | None = None,
    ref: str | None = None,
    excerpt: str | None = None,
) -> EvidenceDict:
    """One typed piece of evidence; ``excerpt`` defaults to a readable value + unit + date."""
    if excerpt is None and value is not None:
        excerpt = " ".join(p for p in (value, unit or "") if p) + (f" ({observed_at})" if observed_at else "")
    return {
        "label": label,
        "ref": ref,
        "excerpt": excerpt,
        "record_type": record_type,
        "record_key": record_key,
        "value": value,
        "unit": unit,
        "reference_range": reference_range,
        "flags": list(flags),
        "observed_at": observed_at,
        "assessment": assessment,
        "document_uri": document_uri,
        "page": page,
        "span_start": span[0] if span else None,
        "span_end": span[1] if span else None,
    }


def new_item(
    *,
    practice_id: str,
    workflow: str,
    subject: Sequence[str],
    kind: str,
    queue: str,
    title: str,
    what_happened: str,
    produced_by: ProducedByDict,
    source: SourceRefDict,
    now: int,
    priority: str = "routine",
    patient_id: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    decision_needed: str | None = None,
    proposed_action: str | None = None,
    actions_taken: Sequence[str] = (),
    evidence: Sequence[EvidenceDict] = (),
    options: Sequence[DecisionOptionDict] = (),
    draft_ids: Sequence[str] = (),
    due_at: int | None = None,
    supersedes: str | None = None,
) -> HandoffItemDict:
    """A new open work item under contract version 2, checked against the contract's enums.

    ``now`` is the event's time as the step was given it (never the wall clock), so a
    replay builds the identical item."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; the contract's queues are {', '.join(QUEUES)}")
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; one of {', '.join(PRIORITIES)}")
    if not kind.startswith(f"{workflow}."):
        raise ValueError(f"kind {kind!r} must start with the workflow name {workflow!r} + '.'")
    if produced_by.get("kind") == "rule" and not (produced_by.get("rule_id") and produced_by.get("rule_version")):
        raise ValueError("an item produced by a rule names the rule's id and version")
    return {
        "practice_id": practice_id,
        "item_id": item_id_for(workflow, *subject),
        "workflow": workflow,
        "queue": queue,
        "priority": priority,
        "title": title,
        "what_happened": what_happened,
        "actions_taken": list(actions_taken),
        "decision_needed": decision_needed,
        "patient_id": patient_id,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "evidence": list(evidence),
        "created_at": now,
        "source": source,
        "corrected": False,
        "contract_version": CONTRACT_VERSION,
        "kind": kind,
        "state": "open",
        "revision": 1,
        "due_at": due_at,
        "supersedes": supersedes,
        "proposed_action": proposed_action,
        "draft_ids": list(draft_ids),
        "options": list(options),
        "produced_by": produced_by,
        "assigned_to": None,
        "decision_id": None,
        "outcome": None,
        "updated_at": now,
    }


def apply_decision(item: HandoffItemDict, decision: StaffDecisionDict) -> HandoffItemDict:
    """The item after a person's decision: the next revision, in the state the option leads to.

    ``assign`` moves an open item to ``in_progress`` (assigned to the actor); ``escalate``
    keeps it open for another queue's person; ``reject`` ends it ``rejected``; every other
    option ends it ``done``. A decision on an item in an end state, or with an option
    the item does not offer, is refused: staff tools must show the latest revision."""
    state = item.get("state", "open")
    if state in END_STATES:
        raise InvalidTransition(f"item {item['item_id']} is {state}; a decision can no longer change it")
    offered = {o["option"] for o in item.get("options") or []}
    chosen = decision["option"]
    if chosen not in offered and chosen not in _MOVING:
        raise InvalidTransition(f"option {chosen!r} is not one of this item's options ({', '.join(sorted(offered))})")
    if chosen == "assign":
        new_state, outcome, assigned = "in_progress", None, decision["actor"]
    elif chosen == "escalate":
        new_state, outcome, assigned = "open", None, None
    else:
        new_state = "rejected" if chosen in _REJECTING else "done"
        outcome, assigned = chosen, item.get("assigned_to")
    updated: HandoffItemDict = {
        **item,
        "state": new_state,
        "revision": item.get("revision", 1) + 1,
        "assigned_to": assigned,
        "decision_id": decision["decision_id"],
        "outcome": outcome,
        "updated_at": decision["decided_at"],
    }
    return updated


def supersede(old: HandoffItemDict, by_item_id: str, now: int) -> HandoffItemDict:
    """The old item's last revision when a newer item replaces it (``new.supersedes = old``)."""
    if old.get("state", "open") in END_STATES:
        raise InvalidTransition(f"item {old['item_id']} is already {old.get('state')}")
    updated: HandoffItemDict = {
        **old,
        "state": "superseded",
        "revision": old.get("revision", 1) + 1,
        "outcome": f"superseded by {by_item_id}",
        "updated_at": now,
    }
    return updated


def latest(items: Iterable[HandoffItemDict]) -> dict[str, HandoffItemDict]:
    """Fold item revisions (any order, duplicates allowed) to the latest per item id, as consumers must."""
    out: dict[str, HandoffItemDict] = {}
    for it in items:
        have = out.get(it["item_id"])
        if have is None or it.get("revision", 1) >= have.get("revision", 1):
            out[it["item_id"]] = it
    return out
