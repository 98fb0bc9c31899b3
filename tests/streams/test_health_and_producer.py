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


def test_a_touched_partition_is_busy_not_stalled():
    """A batch of slow faxes: the offset taken stays the same while each fax is OCRed;
    the agent's touch after every message keeps the partition live."""
    import time as _time

    s = ProgressSensor()
    s.assigned_once = True
    tp = TP("pf.raw.fax", 0)
    s.progress[tp] = PartitionProgress(offset=9, at=_time.monotonic() - 300)
    assert not evaluate(s, {tp}, {tp: 20}, stall_seconds=60).live
    s.touch(tp)
    v = evaluate(s, {tp}, {tp: 20}, stall_seconds=60)
    assert v.live and s.progress[tp].offset == 9


def test_retry_backoff_wait_reports_progress_while_it_waits():
    """A retry waits up to retry_backoff_max_ms (5 min by default) by design; the wait
    must not read as a stall (stall_seconds 60) and get the worker restarted."""
    import asyncio
    import time as _time
    from types import SimpleNamespace

    from practiceflow.processors.retry import NOT_BEFORE
    from practiceflow.streams.clock import now_ms
    from practiceflow.streams.normalize_agent import Normalizer

    sensor = ProgressSensor()
    sensor.assigned_once = True
    tp = TP("pf.retry.hl7v2", 0)
    sensor.progress[tp] = PartitionProgress(offset=3, at=_time.monotonic() - 300)
    fake = SimpleNamespace(cfg=SimpleNamespace(stall_seconds=2.0), sensor=sensor)
    normalizer = Normalizer(fake)  # type: ignore[arg-type]
    seen_live: list[bool] = []

    async def watch() -> None:
        for _ in range(6):
            await asyncio.sleep(0.25)
            seen_live.append(evaluate(sensor, {tp}, {tp: 9}, stall_seconds=2.0).live)

    async def main() -> float:
        started = _time.monotonic()
        raw = {"headers": {NOT_BEFORE: str(now_ms() + 1500)}}
        await asyncio.gather(normalizer._wait_not_before(raw, tp), watch())
        return _time.monotonic() - started

    waited = asyncio.run(main())
    assert waited >= 1.4
    assert seen_live and all(seen_live)
