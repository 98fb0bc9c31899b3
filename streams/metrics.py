"""The operator's metrics that the per-message code does not keep: set when Prometheus scrapes.

``streams/health.py`` keeps the worker's per-message counters; the gateways, the sink, the
fax step and the LLM client keep theirs beside their code. What lives here:

* the metrics several services share (``practiceflow_command_results_total`` from every
  command executor, the per-practice input counter of the gateways, the pipeline latency);
* the gauges that describe *state* rather than events — consumer lag, dead-letter depth,
  work items by state. Counting those per event would drift (a restart restores a table
  from its changelog without passing through the agents), so :func:`refresh` reads them
  from their source when the worker's ``/metrics`` page is scraped: lag from the
  consumer's high-water marks minus the group's committed offsets (``health.probe``),
  dead-letter depth from the dead-letter topics' watermarks, work items from the
  decisions agent's ``work-items`` table, pilot agreement and minutes saved from the
  ``pilot-agreement`` table's running counts (this worker's partitions: sum over workers).

Names follow Prometheus' conventions: ``_total`` counters, ``_seconds`` histograms, base
units, no PHI in labels (practice ids, feeds, workflows, states and outcomes only; every
label's values are bounded by the deployment's practices or an enumeration).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from practiceflow.processors.workflows.workitem import OPTIONS
from practiceflow.streams import catalog

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.metrics")

PRACTICE_INPUTS = Counter(
    "practiceflow_practice_inputs_total",
    "Inputs the gateways accepted or rejected, per practice and feed",
    ["practice", "feed", "outcome"],
)
PIPELINE_SECONDS = Histogram(
    "practiceflow_pipeline_seconds",
    "Gateway receipt to the worker's outputs confirmed by Kafka (normalized or dead-lettered)",
    ["feed"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DECISIONS = Counter(
    "practiceflow_decisions_total",
    "Staff decisions, by the item's workflow, the option chosen and whether it applied",
    ["workflow", "option", "result"],
)
COMMAND_RESULTS = Counter(
    "practiceflow_command_results_total",
    "Workflow commands executed, by kind and outcome (ok | failed | timeout | refused)",
    ["kind", "outcome"],
)
OCR_PAGES = Counter("practiceflow_ocr_pages_total", "Fax pages through OCR, by the document's OCR status", ["status"])
OCR_SECONDS = Histogram(
    "practiceflow_ocr_seconds",
    "OCR time per fax (the child process's own measure; a timeout counts its limit)",
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
WORK_ITEMS = Gauge(
    "practiceflow_work_items",
    "Work items by practice, workflow and state (latest revision; this worker's partitions)",
    ["practice", "workflow", "state"],
)
DEAD_LETTER_DEPTH = Gauge(
    "practiceflow_dead_letter_depth",
    "Dead letters retained in a dead-letter topic (high minus low watermark, all partitions)",
    ["feed"],  # a feed, or "cmd" for commands
)
PILOT_ITEMS = Gauge(
    "practiceflow_pilot_items",
    "Pilot mode: work items compared with what staff did, by practice, workflow and verdict "
    "(agree | disagree | no_verdict; since the pilot began; this worker's partitions)",
    ["practice", "workflow", "verdict"],
)
PILOT_TIME_SAVED = Gauge(
    "practiceflow_pilot_staff_time_saved_seconds",
    "Pilot mode: staff time the agreed items would have saved (documented minutes per task, "
    "rules/pilot/tasks.yaml, in seconds), by practice and workflow (since the pilot began; this worker's partitions)",
    ["practice", "workflow"],
)
REFRESH_ERRORS = Counter(
    "practiceflow_metrics_refresh_errors_total",
    "Scrape-time metric reads that failed (the rest still answer)",
    ["what"],
)

COMMAND_OUTCOMES = ("ok", "failed", "timeout", "refused")
MAX_PRACTICE_LABELS = 1000  # a region's practices; past that (a caller naming made-up practices) "other"
_practices: set[str] = set()


def practice_label(practice_id: str) -> str:
    """The practice as a label value. A rejected input's practice comes from its sender (a URL
    path, a folder name) before anything vouched for it, so distinct values are capped."""
    if practice_id not in _practices:
        if len(_practices) >= MAX_PRACTICE_LABELS:
            return "other"
        _practices.add(practice_id)
    return practice_id


def init_command_outcomes(kind: str) -> None:
    """Export every outcome of ``kind`` at 0 from the start, so a rate over a failure that
    never happened reads 0 rather than "no data" (and alerts on it can evaluate)."""
    for outcome in COMMAND_OUTCOMES:
        COMMAND_RESULTS.labels(kind, outcome)


def observe_pipeline_seconds(marks: list[tuple[Any, str, int]]) -> None:
    """Receipt-to-confirmed time of each message of a confirmed batch (once per message: an
    HL7 message has two de-dup marks). ``received_at`` is the gateway's clock (ms)."""
    now = time.time()
    seen: set[int] = set()
    for ev, _key, received_at in marks:
        if id(ev) in seen:
            continue
        seen.add(id(ev))
        feed = ev.value.get("feed") if isinstance(ev.value, dict) else None
        if feed in catalog.FEEDS:
            PIPELINE_SECONDS.labels(feed).observe(max(0.0, now - received_at / 1000))


def observe_ocr(result: Any, status: str) -> None:
    """One fax's OCR: its pages (by the document's OCR status) and the time it took."""
    OCR_PAGES.labels(status).inc(result.page_count)
    OCR_SECONDS.observe(result.seconds)


def decision_option(option: str) -> str:
    """The option as a label: one of the contract's ``OPTIONS``, else ``other`` (a decision
    is input from outside: its text must not grow the metric without bound)."""
    return option if option in OPTIONS else "other"


class Watermarks:
    """Low/high watermarks of topics, read with a plain client off the event loop."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "practiceflow-metrics", "enable.auto.commit": False}
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-watermarks")

    def _depth(self, topics: list[str]) -> dict[str, int]:
        from confluent_kafka import TopicPartition

        meta = self._consumer.list_topics(timeout=5)
        out: dict[str, int] = {}
        for topic in topics:
            t = meta.topics.get(topic)
            if t is None or t.error is not None:
                continue
            total = 0
            for p in t.partitions:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                total += max(0, high - low)
            out[topic] = total
        return out

    async def depth(self, topics: list[str]) -> dict[str, int]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._depth, topics)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        with contextlib.suppress(Exception):
            self._consumer.close()


def count_work_items(values: Any) -> dict[tuple[str, str, str], int]:
    """(practice, workflow, state) -> items, from the ``work-items`` table's JSON values."""
    counts: dict[tuple[str, str, str], int] = {}
    for raw in values:
        if not raw:
            continue
        item = json.loads(raw)["item"]
        key = (item["practice_id"], item.get("workflow") or "unknown", item.get("state") or "open")
        counts[key] = counts.get(key, 0) + 1
    return counts


def sum_pilot_counts(table: Any) -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, str], float]]:
    """(practice, workflow, verdict) -> items and (practice, workflow) -> minutes saved, from the
    ``pilot-agreement`` table's running counts (``count:<practice>|<workflow>|<kind>|<rule>|<version>``)."""
    from practiceflow.processors.pilot.compare import VERDICTS
    from practiceflow.streams.workflows.pilot import COUNT

    items: dict[tuple[str, str, str], float] = {}
    minutes: dict[tuple[str, str], float] = {}
    for key, raw in table.items():
        if not key.startswith(COUNT) or not raw:
            continue
        practice, workflow = key[len(COUNT) :].split("|")[:2]
        counts = json.loads(raw)
        for verdict in VERDICTS:
            items[(practice, workflow, verdict)] = items.get((practice, workflow, verdict), 0) + counts.get(verdict, 0)
        minutes[(practice, workflow)] = minutes.get((practice, workflow), 0.0) + counts.get("minutes_saved", 0.0)
    return items, minutes


async def refresh(pipeline: Pipeline) -> None:
    """Set the state gauges from their sources; called by the worker's ``/metrics`` page.
    Each read is independent: one that fails is counted and leaves its gauge as it was."""
    from practiceflow.streams.health import probe

    try:
        await asyncio.wait_for(probe(pipeline), 10.0)  # replaces the lag series in one step (health.py)
    except Exception as exc:  # a scrape must answer
        REFRESH_ERRORS.labels("consumer_lag").inc()
        log.warning("metrics: consumer lag not refreshed: %s", type(exc).__name__)
    try:
        if getattr(pipeline, "watermarks", None) is None:
            pipeline.watermarks = Watermarks(pipeline.bootstrap)  # type: ignore[attr-defined]
        names = {  # dlq.<feed> and dlq.cmd (commands no executor could read)
            spec.name(pipeline.prefix): spec.suffix.removeprefix("dlq.")
            for spec in catalog.CATALOG
            if spec.kind == catalog.Kind.DEAD_LETTER
        }
        depth = await asyncio.wait_for(pipeline.watermarks.depth(list(names)), 10.0)  # type: ignore[attr-defined]
        for topic, feed in names.items():
            DEAD_LETTER_DEPTH.labels(feed).set(depth.get(topic, 0))
    except Exception as exc:
        REFRESH_ERRORS.labels("dead_letter_depth").inc()
        log.warning("metrics: dead-letter depth not refreshed: %s", type(exc).__name__)
    items = getattr(pipeline, "work_items", None)
    if items is not None:
        try:
            counts = count_work_items(items.table.data.values())
            WORK_ITEMS.clear()
            for (practice, workflow, state), n in counts.items():
                WORK_ITEMS.labels(practice, workflow, state).set(n)
        except Exception as exc:
            REFRESH_ERRORS.labels("work_items").inc()
            log.warning("metrics: work items not refreshed: %s", type(exc).__name__)

    pilot = getattr(pipeline, "pilot", None)
    if pilot is not None:
        try:
            compared, minutes = sum_pilot_counts(pilot.table.data)
            PILOT_ITEMS.clear()
            PILOT_TIME_SAVED.clear()
            for (practice, workflow, verdict), seen in compared.items():
                PILOT_ITEMS.labels(practice, workflow, verdict).set(seen)
            for (practice, workflow), m in minutes.items():
                PILOT_TIME_SAVED.labels(practice, workflow).set(m * 60)
        except Exception as exc:
            REFRESH_ERRORS.labels("pilot").inc()
            log.warning("metrics: pilot agreement not refreshed: %s", type(exc).__name__)


def close(pipeline: Pipeline) -> None:
    """Release the watermark client (the pipeline's stop calls this)."""
    wm = getattr(pipeline, "watermarks", None)
    if wm is not None:
        wm.close()
        pipeline.watermarks = None  # type: ignore[attr-defined]
