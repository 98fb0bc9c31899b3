"""Liveness and readiness that notice what Faust itself does not report.

faust-streaming's known failure modes are consumers that stop silently, rebalance
loops, and duplicate processing after restarts. :class:`ProgressSensor` (a Faust
sensor) records, per assigned partition, the last offset the agents took and when;
:func:`evaluate` turns that plus the partitions' high-water marks into a verdict:

- *stalled*: a partition has lag but no progress for ``stall_seconds`` -> not live,
  so the orchestrator restarts the worker;
- *not committing*: a partition's committed offset stood still for ``commit_stall_seconds``
  while there was lag past it -> not live (issue 8 saw an audit partition whose committed
  offset never moved in a worker's whole life, while the worker looked busy);
- *rebalance loop*: more than ``max_rebalances`` rebalances within the window -> not live;
- *ready* once started, assigned, not mid-rebalance.

Lag is measured from the furthest of the offset the agents took and the group's
committed offset: a partition that received no event since the worker started is caught
up when its committed offset equals its high-water mark. (Issue 8: counting such a
partition as lagging by its whole high-water mark made ``/healthz`` call a healthy,
caught-up worker dead for minutes after a restart.)

The ``practiceflow_consumer_lag`` gauge is set for every assigned partition, from the
high-water mark the probe reads from the broker together with the committed offsets (one
read per probe, not per event). The member consumer learns a partition's high-water mark
only from a fetch response, so on a freshly started or idle worker it often has none, and a
gauge set only from it left the lag panel and the lag alert without data. The *verdict*
(stalled / not committing) still judges only partitions the consumer has fetched: a
partition held back while Faust recovers its tables is not a stall, and calling it one
would make the orchestrator restart a worker that is recovering.

Duplicates after a restart are handled by the agents' de-duplication tables, not here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from faust.sensors.base import Sensor
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("practiceflow.health")

MESSAGES = Counter("practiceflow_messages_total", "Messages per feed and stage", ["feed", "stage"])
RECORDS = Counter("practiceflow_records_total", "Normalized records per type", ["record_type"])
DEAD_LETTERS = Counter("practiceflow_dead_letters_total", "Dead-lettered inputs", ["feed", "reason_code"])
HANDOFFS = Counter("practiceflow_handoff_items_total", "Handoff items", ["workflow", "queue"])
NORMALIZE_SECONDS = Histogram(
    "practiceflow_normalize_seconds",
    "Time to normalize one message",
    ["feed"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
UNMAPPED_SEGMENTS = Counter(
    "practiceflow_unmapped_segments_total",
    "Segments a normalizer received but does not map into any record (one per segment type per message)",
    ["feed", "segment"],
)
UNMAPPED_PREFIX = "unmapped_segment:"  # the normalizers' warning prefix (processors/hl7/normalize.py)
_MAX_SEGMENT_LABELS = 256  # distinct segment labels kept; hostile input cannot grow the metric without bound
_segment_labels: set[str] = set()


def count_unmapped(feed: str, warnings: list[str]) -> None:
    """Count a result's ``unmapped_segment:<ID>`` warnings, so a gap in the mapping shows
    in the metrics, not only in a message's warnings. Segment ids are validated by the
    parser (3 upper-case ASCII characters, no content); past 256 distinct ids the rest
    are counted as ``other``."""
    for w in warnings:
        if w.startswith(UNMAPPED_PREFIX):
            seg = w[len(UNMAPPED_PREFIX) :]
            if seg not in _segment_labels:
                if len(_segment_labels) >= _MAX_SEGMENT_LABELS:
                    seg = "other"
                else:
                    _segment_labels.add(seg)
            UNMAPPED_SEGMENTS.labels(feed, seg).inc()


CONSUMER_LAG = Gauge("practiceflow_consumer_lag", "High-water mark minus position", ["topic", "partition"])
STALLED = Gauge("practiceflow_worker_stalled", "1 when a partition has lag and no progress")


@dataclass
class PartitionProgress:
    offset: int = -1
    at: float = field(default_factory=time.monotonic)


@dataclass
class CommitProgress:
    """A partition's committed offset and since when it has had that value."""

    offset: int
    since: float


class ProgressSensor(Sensor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.progress: dict[Any, PartitionProgress] = {}
        self.rebalances: deque[float] = deque(maxlen=64)
        self.rebalancing = False
        self.assigned_once = False
        self.commits: dict[Any, CommitProgress] = {}
        # the probe's broker read in flight, shared by probes that come while it runs (a scrape
        # every second must not queue reads behind a slow one; the agents' reads share the pool)
        self.positions_read: asyncio.Future[dict[Any, tuple[int, int]]] | None = None

    def note_committed(self, committed: dict[Any, int], now: float | None = None) -> None:
        """Record the group's committed offsets as a probe read them; a value that changed
        restarts that partition's commit clock."""
        now = time.monotonic() if now is None else now
        for tp, off in committed.items():
            c = self.commits.get(tp)
            if c is None or c.offset != off:
                self.commits[tp] = CommitProgress(off, now)

    def on_stream_event_in(self, tp, offset, stream, event):
        p = self.progress.get(tp)
        if p is None:
            p = self.progress[tp] = PartitionProgress()
        p.offset = offset
        p.at = time.monotonic()
        return None

    def touch(self, tp: Any) -> None:
        """Progress without a new offset: the agent finished one message of a batch it took
        earlier, or is waiting on a retry's backoff. A batch of slow faxes (OCR, up to
        ``ocr_timeout_seconds`` each) would otherwise read as a stall once the batch as a
        whole outlasts ``stall_seconds``, and a liveness probe would restart a worker that
        is working, over and over."""
        p = self.progress.get(tp)
        if p is None:
            p = self.progress[tp] = PartitionProgress()
        p.at = time.monotonic()

    def on_rebalance_start(self, app):
        self.rebalancing = True
        self.rebalances.append(time.monotonic())
        return {"time_start": time.monotonic()}

    def on_rebalance_end(self, app, state):
        self.rebalancing = False
        self.assigned_once = True
        now = time.monotonic()
        # A fresh assignment restarts every partition's clock.
        for p in self.progress.values():
            p.at = now
        for c in self.commits.values():
            c.since = now


@dataclass
class HealthVerdict:
    live: bool
    ready: bool
    reasons: list[str]
    lag: dict[str, int]


def evaluate(
    sensor: ProgressSensor,
    assigned: set,
    highwaters: dict,
    *,
    stall_seconds: float,
    committed: dict | None = None,
    broker_highwaters: dict | None = None,
    commit_stall_seconds: float | None = None,
    max_rebalances: int = 6,
    window_s: float = 300.0,
    now: float | None = None,
) -> HealthVerdict:
    """Pure verdict from what the sensor saw, the consumer's high-water marks and the group's
    ``committed`` offsets (when the probe could read them; see module doc). The lag (the
    verdict's ``lag`` and the gauge) also counts partitions whose high-water mark only the
    broker's ``broker_highwaters`` know; the stall checks do not (module doc)."""
    now = time.monotonic() if now is None else now
    committed = committed or {}
    broker_highwaters = broker_highwaters or {}
    reasons: list[str] = []
    lag: dict[str, int] = {}
    series: dict[tuple[str, int], int] = {}
    stalled = False
    for tp in assigned:
        hw = highwaters.get(tp)
        p = sensor.progress.get(tp)
        done = committed.get(tp)
        taken = p.offset + 1 if p else None
        known = [x for x in (taken, done) if x is not None]
        position = max(known) if known else None
        marks = [x for x in (hw, broker_highwaters.get(tp)) if x is not None]
        if marks:  # the newer of the two: the broker's read is fresher than the last fetch's
            newest = max(marks)
            ahead = max(0, newest - position if position is not None else newest)
            lag[f"{tp.topic}[{tp.partition}]"] = ahead
            series[(tp.topic, tp.partition)] = ahead
        if hw is None:
            continue
        behind = hw - position if position is not None else hw
        since = now - (p.at if p else _assigned_at(sensor, now))
        if behind > 0 and since > stall_seconds:
            stalled = True
            reasons.append(f"{tp.topic}[{tp.partition}] lag {behind} with no progress for {since:.0f}s")
        c = sensor.commits.get(tp)
        if commit_stall_seconds is not None and done is not None and c is not None and c.offset == done:
            still = now - c.since
            if hw > done and still > commit_stall_seconds:
                stalled = True
                reasons.append(
                    f"{tp.topic}[{tp.partition}] committed offset {done} stood still for {still:.0f}s "
                    f"with {hw - done} messages after it"
                )
    _publish_lag(series)
    recent = [t for t in sensor.rebalances if now - t < window_s]
    looping = len(recent) > max_rebalances
    if looping:
        reasons.append(f"{len(recent)} rebalances in {window_s:.0f}s")
    STALLED.set(1 if stalled else 0)
    live = not stalled and not looping
    ready = live and sensor.assigned_once and not sensor.rebalancing
    if not sensor.assigned_once:
        reasons.append("no partitions assigned yet")
    if sensor.rebalancing:
        reasons.append("rebalancing")
    return HealthVerdict(live=live, ready=ready, reasons=reasons, lag=lag)


async def probe(pipeline: Any) -> HealthVerdict:
    """The worker's verdict now: the agents' input partitions, their high-water marks and the
    group's committed offsets (read with the pipeline's non-member client, with the broker's
    high-water marks; if that read fails, e.g. the coordinator is moving, the verdict falls
    back to the agents' progress and the consumer's high-water marks)."""
    consumer = pipeline.app.consumer
    # Only partitions an agent reads; changelog partitions are written, not read, while running.
    assigned = {tp for tp in consumer.assignment() if tp.topic in pipeline.source_topics} if consumer else set()
    highwaters = {tp: consumer.highwater(tp) for tp in assigned} if consumer else {}
    committed: dict = {}
    broker_highwaters: dict = {}
    if assigned:
        sensor = pipeline.sensor
        pending = sensor.positions_read
        if pending is None or pending.done():
            pending = asyncio.ensure_future(pipeline.committed_offsets.read_positions(sorted(assigned)))
            pending.add_done_callback(_retrieve)
            sensor.positions_read = pending
        try:
            positions = await asyncio.wait_for(asyncio.shield(pending), 5.0)
            committed = {tp: start for tp, (start, _high) in positions.items() if tp in assigned}
            broker_highwaters = {tp: high for tp, (_start, high) in positions.items() if tp in assigned}
        except Exception as exc:  # a probe must answer; a missing input only weakens the verdict
            log.warning("health probe could not read committed offsets: %s", type(exc).__name__)
    pipeline.sensor.note_committed(committed)
    cfg = pipeline.cfg
    return evaluate(
        pipeline.sensor,
        assigned,
        highwaters,
        stall_seconds=cfg.stall_seconds,
        committed=committed,
        broker_highwaters=broker_highwaters,
        commit_stall_seconds=cfg.commit_stall_seconds,
    )


def _publish_lag(series: dict[tuple[str, int], int]) -> None:
    """Replace the lag gauge's series with ``series`` in one step, with no await in between:
    partitions this worker no longer holds stop reporting, and a concurrent scrape never sees
    the gauge emptied. (It was cleared before the probe's broker read and set after it; a
    second scrape's clear then landed while the first still awaited its other reads, and the
    first page went out with no lag series at all.)"""
    CONSUMER_LAG.clear()
    for (topic, partition), n in series.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(n)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Take a shared read's outcome, so one that failed after every probe gave up on it is not
    logged as "exception never retrieved"."""
    if not fut.cancelled():
        fut.exception()


def _assigned_at(sensor: ProgressSensor, now: float) -> float:
    return sensor.rebalances[-1] if sensor.rebalances else now
