"""Health by commits: a caught-up worker is never dead; one that stopped committing is noticed.

Issue 8: after a restart ``/healthz`` called a healthy worker dead for minutes, because a
partition with no event since the start counted as lagging by its whole high-water mark;
and an audit partition's committed offset stood still for a worker's whole life unnoticed.
"""

from __future__ import annotations

from collections import namedtuple

from practiceflow.streams.health import PartitionProgress, ProgressSensor, evaluate

TP = namedtuple("TP", "topic partition")


def _sensor() -> ProgressSensor:
    s = ProgressSensor()
    s.assigned_once = True
    s.rebalances.append(1000.0)  # assigned at t=1000
    return s


def test_a_partition_without_events_since_start_is_caught_up_when_committed_at_the_high_water_mark():
    s = _sensor()
    tp = TP("pf.raw.hl7v2", 1)
    # the old verdict: no event seen since the start -> lag = the whole high-water mark -> dead
    assert not evaluate(s, {tp}, {tp: 69_146}, stall_seconds=60, now=1300.0).live
    committed = {tp: 69_146}
    s.note_committed(committed, now=1000.0)
    v = evaluate(s, {tp}, {tp: 69_146}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=5000.0)
    assert v.live and v.ready and v.lag == {"pf.raw.hl7v2[1]": 0}


def test_an_empty_partition_and_one_nobody_committed_yet_at_its_log_start_are_caught_up():
    s = _sensor()
    tp = TP("pf.raw.x12", 0)
    committed = {tp: 0}  # the probe reads the low watermark for a partition with no commit
    s.note_committed(committed, now=1000.0)
    assert evaluate(s, {tp}, {tp: 0}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=9000.0).live


def test_lag_behind_the_committed_offset_with_no_event_is_still_a_stall():
    s = _sensor()
    tp = TP("pf.raw.hl7v2", 2)
    committed = {tp: 100}
    s.note_committed(committed, now=1000.0)
    v = evaluate(s, {tp}, {tp: 150}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=1100.0)
    assert not v.live and "lag 50 with no progress" in v.reasons[0]


def test_a_consumer_that_takes_events_but_stopped_committing_is_not_live():
    s = _sensor()
    tp = TP("pf.audit.in", 0)
    committed = {tp: 40}
    s.note_committed(committed, now=1000.0)
    # the agent keeps taking events (progress is fresh) but the committed offset never moves
    s.progress[tp] = PartitionProgress(offset=900, at=1390.0)
    early = evaluate(s, {tp}, {tp: 1000}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=1200.0)
    assert early.live  # under commit_stall_seconds: a long batch (faxes) may hold its commit
    s.progress[tp] = PartitionProgress(offset=990, at=1395.0)
    s.note_committed(committed, now=1395.0)
    v = evaluate(s, {tp}, {tp: 1000}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=1400.0)
    assert not v.live
    assert any("committed offset 40 stood still" in r for r in v.reasons), v.reasons
    # commits move again: live
    committed = {tp: 995}
    s.note_committed(committed, now=1401.0)
    s.progress[tp] = PartitionProgress(offset=999, at=1401.0)
    assert evaluate(
        s, {tp}, {tp: 1000}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=1402.0
    ).live


def test_a_committed_offset_that_stands_still_with_nothing_after_it_is_idle_not_stalled():
    s = _sensor()
    tp = TP("pf.audit.in", 1)
    committed = {tp: 500}
    s.note_committed(committed, now=1000.0)
    s.progress[tp] = PartitionProgress(offset=499, at=1000.0)
    v = evaluate(s, {tp}, {tp: 500}, stall_seconds=60, committed=committed, commit_stall_seconds=300, now=90_000.0)
    assert v.live and v.ready


def test_lag_is_reported_from_the_brokers_high_water_mark_before_the_consumer_has_one():
    """A partition the member consumer has not fetched yet (its high-water mark is unknown) still
    reports its lag, from the broker's high-water mark; it is not judged stalled on that alone
    (a partition held back while Faust recovers its tables is not a stall)."""
    s = _sensor()
    fetched, unfetched, idle = TP("pf.raw.hl7v2", 0), TP("pf.raw.hl7v2", 1), TP("pf.raw.x12", 0)
    committed = {fetched: 10, unfetched: 5, idle: 7}
    s.note_committed(committed, now=1000.0)
    v = evaluate(
        s,
        {fetched, unfetched, idle},
        {fetched: 10, unfetched: None},  # the consumer's: none yet for two of them
        stall_seconds=60,
        committed=committed,
        broker_highwaters={fetched: 12, unfetched: 8, idle: 7},
        commit_stall_seconds=300,
        now=5000.0,
    )
    assert v.lag == {"pf.raw.hl7v2[0]": 2, "pf.raw.hl7v2[1]": 3, "pf.raw.x12[0]": 0}
    assert v.live, v.reasons  # the consumer's own high-water mark shows no lag: no stall
