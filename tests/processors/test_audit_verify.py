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
    """Dropping the last event leaves a chain that verifies alone; the other store's head disagrees
    (ClickHouse merely behind is not a problem: see the next test)."""
    full = _chain(5)
    lines, problems = verify_stores({"topic": {"clinic-a": full[:-1]}, "clickhouse": {"clinic-a": full}})
    assert len(problems) == 1 and "disagree" in problems[0]
    altered_tail = [*full[:-1], dict(full[-1], hash="f" * 64)]
    _, problems = verify_stores({"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": altered_tail}})
    assert len(problems) == 1  # the stored hash no longer matches the event: altered
    lines, problems = verify_stores({"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": list(full)}})
    assert problems == [] and all(" ok " in line or " agree (ClickHouse up to date)" in line for line in lines)


def test_clickhouse_behind_the_topic_is_reported_not_a_problem():
    """Review s18 S5: the sink is always some batches behind on a live system; ClickHouse must be a
    prefix of the topic chain, reported "behind by N". A tail the sink committed but ClickHouse
    lacks (deleted rows) stays a problem, and so do rows the topic does not hold."""
    full = _chain(5)
    lines, problems = verify_stores({"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": full[:3]}})
    assert problems == [] and any("behind by 2" in line for line in lines), lines
    # with the sink's committed offset past them, the two missing events were deleted
    offsets = {"clinic-a": [10, 11, 12, 13, 14]}
    _, problems = verify_stores(
        {"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": full[:3]}},
        topic_offsets=offsets,
        committed={"clinic-a": 15},
    )
    assert len(problems) == 1 and "2 events the sink committed are missing" in problems[0]
    _, problems = verify_stores(
        {"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": full[:3]}},
        topic_offsets=offsets,
        committed={"clinic-a": 13},  # the sink committed the first three only: behind, not missing
    )
    assert problems == []
    # ClickHouse ahead of the topic (the topic's tail deleted): a problem
    _, problems = verify_stores({"topic": {"clinic-a": full[:3]}, "clickhouse": {"clinic-a": full}})
    assert len(problems) == 1 and "disagree" in problems[0]
    # a practice only ClickHouse holds
    _, problems = verify_stores({"topic": {}, "clickhouse": {"clinic-a": full}})
    assert len(problems) == 1 and "not on the topic" in problems[0]


def test_a_clickhouse_chain_cut_by_the_retention_ttl_verifies_from_its_first_row():
    """Review s18 S5: after the TTL deleted the oldest rows, ClickHouse's first row links to an event
    it no longer holds; that is retention, not a break, when the missing events are past the TTL."""
    full = _chain(6)
    kept = full[2:]
    brk = find_break(kept)
    assert brk is not None and (brk.position, brk.problem) == (0, "link")  # without a start: broken
    assert find_break(kept, start=kept[0]["prev_hash"]) is None
    ttl = frozenset({"clickhouse"})
    lines, problems = verify_stores(
        {"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": kept}}, truncated_ok=ttl, retention_cutoff_ms=2_000
    )
    assert problems == [] and any("past the retention TTL" in line for line in lines), lines
    # events missing at the start that are still within the retention: deleted, not expired
    _, problems = verify_stores(
        {"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": kept}}, truncated_ok=ttl, retention_cutoff_ms=1_000
    )
    assert len(problems) == 1 and "not past the retention TTL" in problems[0]
    # a store not known to be TTL-truncated still reports the break
    _, problems = verify_stores({"topic": {"clinic-a": full}, "clickhouse": {"clinic-a": kept}})
    assert len(problems) == 1 and "BROKEN at position 0" in problems[0]
