"""Liveness and readiness that notice what Faust itself does not report.

faust-streaming's known failure modes are consumers that stop silently, rebalance
loops, and duplicate processing after restarts. :class:`ProgressSensor` (a Faust
sensor) records, per assigned partition, the last offset the agents took and when;
:func:`evaluate` turns that plus the partitions' high-water marks into a verdict:

- *stalled*: a partition has lag but no progress for ``stall_seconds`` -> not live,
  so the orchestrator restarts the worker;
- *rebalance loop*: more than ``max_rebalances`` rebalances within the window -> not live;
- *ready* once started, assigned, not mid-rebalance.

Duplicates after a restart are handled by the agents' de-duplication tables, not here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from faust.sensors.base import Sensor
from prometheus_client import Counter, Gauge, Histogram

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


class ProgressSensor(Sensor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.progress: dict[Any, PartitionProgress] = {}
        self.rebalances: deque[float] = deque(maxlen=64)
        self.rebalancing = False
        self.assigned_once = False

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
    max_rebalances: int = 6,
    window_s: float = 300.0,
    now: float | None = None,
) -> HealthVerdict:
    """Pure verdict from what the sensor saw and the consumer's high-water marks."""
    now = time.monotonic() if now is None else now
    reasons: list[str] = []
    lag: dict[str, int] = {}
    stalled = False
    for tp in assigned:
        hw = highwaters.get(tp)
        if hw is None:
            continue
        p = sensor.progress.get(tp)
        position = p.offset + 1 if p else None
        behind = hw - position if position is not None else hw
        lag[f"{tp.topic}[{tp.partition}]"] = max(0, behind)
        since = now - (p.at if p else _assigned_at(sensor, now))
        if behind > 0 and since > stall_seconds:
            stalled = True
            reasons.append(f"{tp.topic}[{tp.partition}] lag {behind} with no progress for {since:.0f}s")
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


def _assigned_at(sensor: ProgressSensor, now: float) -> float:
    return sensor.rebalances[-1] if sensor.rebalances else now
