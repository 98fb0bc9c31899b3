"""The audit chain's verifier names the first bad position for a deleted, altered, reordered or doubled event."""

from __future__ import annotations

from practiceflow.jobs.audit import verify_stores
from practiceflow.processors.audit import audit_event, chain, find_break, verify_chain


def _chain(n: int, practice: str = "clinic-a") -> list[dict]:
    out: list[dict] = []
    prev = None
    for i in range(n):
        ev = audit_event(
            practice,
            actor="practiceflow.refill",
            action="refill_triaged",
            entity_type="RefillRequest",
            entity_id=f"req-{i}",
            reason="refill.statin@2026-12-01: routine",
            at=1_000 + i,
            details={"seq": str(i)},
            source=f"norm.refill_request/req-{i}",
        )
        linked = chain(prev, ev)
        prev = linked["hash"]
        out.append(linked)
    return out


def test_untouched_chain_verifies():
    events = _chain(6)
    assert find_break(events) is None
    assert verify_chain(events) == (True, -1)


def test_deleted_event_is_found_at_its_position():
    events = _chain(6)
    del events[3]
    brk = find_break(events)
    assert brk is not None and (brk.position, brk.problem) == (3, "link")
    assert verify_chain(events) == (False, 3)


def test_altered_event_is_found_at_its_position():
    events = _chain(6)
    events[2] = dict(events[2], outcome="refused")  # edited in place, hashes left as they were
    brk = find_break(events)
    assert brk is not None and (brk.position, brk.problem) == (2, "altered")
    # a changed detail is an alteration too: details are hashed
    events = _chain(6)
    events[4] = dict(events[4], details={"seq": "99"})
    assert find_break(events).position == 4  # type: ignore[union-attr]


def test_reordered_events_are_found_at_the_first_moved_position():
    events = _chain(6)
    events[1], events[2] = events[2], events[1]
    brk = find_break(events)
    assert brk is not None and (brk.position, brk.problem) == (1, "link")


def test_doubled_event_is_found():
    events = _chain(4)
    events.append(events[-1])
    brk = find_break(events)
    assert brk is not None and (brk.position, brk.problem) == (4, "doubled")


def test_stores_compared_catch_a_truncated_tail():
    """Dropping the last event leaves a chain that verifies alone; the other store's head disagrees."""
    full = _chain(5)
    lines, problems = verify_stores({"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": full[:-1]}})
    assert len(problems) == 1 and "disagree" in problems[0]
    lines, problems = verify_stores({"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": list(full)}})
    assert problems == [] and all(" ok " in line for line in lines)
