"""Stall/rebalance-loop detection (pure) and producer re-creation on unknown outcomes."""

from __future__ import annotations

from collections import namedtuple

import pytest

from practiceflow.localstack.ports import free_port
from practiceflow.streams.health import PartitionProgress, ProgressSensor, evaluate
from practiceflow.streams.producer import DeliveryFailed, DurableProducer

TP = namedtuple("TP", "topic partition")


def _sensor(**progress) -> ProgressSensor:
    s = ProgressSensor()
    s.assigned_once = True
    for tp, (offset, at) in progress.items():
        s.progress[TP(*tp.split(":")[0:1], int(tp.split(":")[1]))] = PartitionProgress(offset, at)
    return s


def test_lag_without_progress_is_a_stall():
    s = ProgressSensor()
    s.assigned_once = True
    tp = TP("pf.raw.hl7v2", 0)
    s.progress[tp] = PartitionProgress(offset=9, at=1000.0)
    v = evaluate(s, {tp}, {tp: 20}, stall_seconds=60, now=1100.0)
    assert not v.live and "no progress" in v.reasons[0]
    # same lag, but progress 10 s ago: alive
    s.progress[tp] = PartitionProgress(offset=9, at=1090.0)
    assert evaluate(s, {tp}, {tp: 20}, stall_seconds=60, now=1100.0).live
    # idle with no lag is not a stall, however long
    s.progress[tp] = PartitionProgress(offset=19, at=0.0)
    v = evaluate(s, {tp}, {tp: 20}, stall_seconds=60, now=1100.0)
    assert v.live and v.ready


def test_rebalance_loop_is_not_live():
    s = ProgressSensor()
    s.assigned_once = True
    s.rebalances.extend([1000.0 + i for i in range(10)])
    v = evaluate(s, set(), {}, stall_seconds=60, now=1020.0)
    assert not v.live and "rebalances" in v.reasons[0]
    assert evaluate(s, set(), {}, stall_seconds=60, now=5000.0).live


def test_unreachable_broker_gives_unknown_outcome_and_a_new_producer():
    port = free_port()  # nothing listens here
    p = DurableProducer(
        f"127.0.0.1:{port}",
        3,
        delivery_timeout_ms=1500,
        extra={"socket.connection.setup.timeout.ms": 1000, "request.timeout.ms": 1000},
    )
    try:
        with pytest.raises(DeliveryFailed) as err:
            p.send("pf.raw.hl7v2", "k", b"v", "clinic-a", timeout=10)
        assert err.value.unknown_outcome
        assert p.recreated == 1
    finally:
        p.close(timeout=0)
