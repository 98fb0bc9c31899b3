"""Audit events and their tamper-evident hash chain (pure).

Each practice's audit events form a chain: ``hash = sha256(prev_hash + canonical
event)``. Editing, dropping or reordering any stored event breaks every hash after
it, which :func:`verify_chain` detects. Details hold ids and codes, never PHI text.

Event ids are unique per event and stable across replays. The worker's events name
their ``source`` (the raw message id and the gateway's receipt time) and a ``seq``
within that message, so re-processing a message after a crash re-creates the same
ids, which the chain agent recognises and skips (``streams/audit_chain.py``); two
identical actions on the same entity from two different inputs get two ids. Events
without a source (the gateways') include their own ``at`` instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def audit_event(
    practice_id: str,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    reason: str,
    at: int,
    outcome: str = "ok",
    details: dict[str, str] | None = None,
    source: str | None = None,
    seq: int = 0,
) -> dict[str, Any]:
    """An unchained AuditEvent.

    ``event_id`` hashes what makes the event unique: who did what to which entity, plus
    ``source`` (what caused it, stable when the cause is replayed) and ``seq`` (its
    place among the events one source causes), or ``at`` when there is no source.
    """
    cause = source if source is not None else str(at)
    basis = f"{practice_id}|{actor}|{action}|{entity_type}|{entity_id}|{outcome}|{cause}|{seq}"
    return {
        "practice_id": practice_id,
        "event_id": hashlib.sha256(basis.encode()).hexdigest()[:32],
        "at": at,
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "reason": reason,
        "outcome": outcome,
        "details": dict(details or {}),
        "prev_hash": None,
        "hash": None,
    }


def _canonical(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain(prev_hash: str | None, event: dict[str, Any]) -> dict[str, Any]:
    prev = prev_hash or GENESIS
    out = dict(event)
    out["prev_hash"] = prev
    out["hash"] = hashlib.sha256(prev.encode() + _canonical(event)).hexdigest()
    return out


def verify_chain(events: Iterable[dict[str, Any]]) -> tuple[bool, int]:
    """(ok, index of the first bad event or -1), for one practice's events in order."""
    prev = None
    for i, ev in enumerate(events):
        expect = chain(prev, ev)["hash"]
        if ev.get("prev_hash") != (prev or GENESIS) or ev.get("hash") != expect:
            return False, i
        prev = ev["hash"]
    return True, -1


@dataclass(frozen=True)
class ChainBreak:
    """Where and how a stored chain stops verifying (``position`` counts from 0, in chain order)."""

    position: int
    event_id: str
    problem: str  # "altered" | "link" (an event deleted before it, or the order changed) | "doubled"

    def describe(self) -> str:
        what = {
            "altered": "its content no longer matches its hash (the event was altered)",
            "link": "it does not link to the event before it (an event was deleted before it, or events reordered)",
            "doubled": "the same event id appears twice",
        }[self.problem]
        return f"position {self.position} (event {self.event_id}): {what}"


def find_break(events: Iterable[dict[str, Any]], start: str | None = None) -> ChainBreak | None:
    """The first place one practice's chain (in stored order) stops verifying, and why; None if intact.

    The same test as :func:`verify_chain`, split by cause so an operator knows what to look
    for: a recomputed hash that differs from the stored one is an altered event; a
    ``prev_hash`` that is not the previous event's hash means something was deleted or moved
    between them (a swap of two events breaks the link at the earlier position). Deleting the
    *last* events is only visible against an independent copy of the head (the worker's
    ``audit-heads`` table, or the other store): see ``practiceflow audit verify``.

    ``start``: the ``prev_hash`` the first event must carry when the store holds the chain from
    the middle on (ClickHouse after its retention TTL deleted the oldest rows); None = genesis."""
    prev: str | None = start
    seen: set[str] = set()
    for i, ev in enumerate(events):
        eid = str(ev.get("event_id"))
        if eid in seen:
            return ChainBreak(i, eid, "doubled")
        seen.add(eid)
        if ev.get("prev_hash") != (prev or GENESIS):
            return ChainBreak(i, eid, "link")
        if ev.get("hash") != chain(prev, ev)["hash"]:
            return ChainBreak(i, eid, "altered")
        prev = ev["hash"]
    return None
