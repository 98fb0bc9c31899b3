"""The scrape-time metrics' pure parts: bounded labels, work items counted from the table's
values, one latency observation per message (tests/deploy/test_metrics_stack.py runs them
against the real broker and a real Prometheus)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from prometheus_client import REGISTRY

from practiceflow.streams import metrics


def _entry(practice: str, workflow: str, state: str | None) -> str:
    item = {"practice_id": practice, "item_id": "x", "workflow": workflow}
    if state is not None:
        item["state"] = state
    return json.dumps({"item": item, "applied": []})


def test_work_items_are_counted_by_practice_workflow_and_state():
    values = [
        _entry("a", "refill", "open"),
        _entry("a", "refill", None),  # items from before the contract have no state: open
        _entry("a", "refill", "done"),
        _entry("b", "intake", "in_progress"),
        "",  # the table's default for a missing key
    ]
    assert metrics.count_work_items(values) == {
        ("a", "refill", "open"): 2,
        ("a", "refill", "done"): 1,
        ("b", "intake", "in_progress"): 1,
    }


def test_labels_from_outside_are_bounded(monkeypatch):
    assert metrics.decision_option("approve") == "approve"
    assert metrics.decision_option("<script>") == "other"
    monkeypatch.setattr(metrics, "_practices", set())
    monkeypatch.setattr(metrics, "MAX_PRACTICE_LABELS", 2)
    assert [metrics.practice_label(p) for p in ("a", "b", "a", "c")] == ["a", "b", "a", "other"]


def test_pipeline_latency_is_observed_once_per_message():
    def count() -> float:
        return REGISTRY.get_sample_value("practiceflow_pipeline_seconds_count", {"feed": "x12"}) or 0.0

    before = count()
    ev = SimpleNamespace(value={"feed": "x12"})
    other = SimpleNamespace(value={"feed": "x12"})
    # an HL7-style message carries two de-dup marks; an undecodable record has no feed
    marks = [(ev, "k1", 1000), (ev, "k2", 1000), (other, "k3", 1000), (SimpleNamespace(value=b"??"), "k4", 1000)]
    metrics.observe_pipeline_seconds(marks)
    assert count() - before == 2


def test_command_outcomes_start_at_zero():
    # a kind no other test of the session used (the registry is process-wide: the EHR tests
    # before this one count real ehr_write outcomes)
    metrics.init_command_outcomes("metrics_test_kind")
    for outcome in metrics.COMMAND_OUTCOMES:
        labels = {"kind": "metrics_test_kind", "outcome": outcome}
        assert REGISTRY.get_sample_value("practiceflow_command_results_total", labels) == 0


def test_a_scrape_that_overlaps_another_still_exports_the_lag():
    """Two scrapes of /metrics overlap (Prometheus every second, a person's curl): the second's
    refresh starts while the first still awaits its dead-letter read. The first page must still
    carry the lag series. (The gauge was cleared at the start of each refresh and refilled after
    the broker read, so the second's clear emptied the first's page: the metrics stack test saw
    no practiceflow_consumer_lag on a busy worker.)"""
    import asyncio
    from collections import namedtuple

    from prometheus_client import generate_latest

    from practiceflow.streams.health import ProgressSensor

    tp = namedtuple("TP", "topic partition")("pf.raw.race", 0)
    gate = asyncio.Event()

    class Offsets:  # the broker read; the second scrape's waits on ``gate``
        async def read_positions(self, tps):
            await gate.wait()
            return dict.fromkeys(tps, (2, 5))

        async def read(self, tps):  # what the probe used before read_positions
            return {t: c for t, (c, _h) in (await self.read_positions(tps)).items()}

    def lag_series(page: bytes) -> list[str]:
        return [
            ln
            for ln in page.decode().splitlines()
            if ln.startswith("practiceflow_consumer_lag{") and 'topic="pf.raw.race"' in ln
        ]

    async def go() -> tuple[bytes, bytes]:
        second: asyncio.Task[bytes] | None = None

        async def scrape() -> bytes:
            await metrics.refresh(pipeline)
            return generate_latest()

        class Watermarks:  # the dead-letter read: the first scrape's starts the second scrape
            async def depth(self, topics):
                nonlocal second
                if second is None:
                    gate.clear()
                    second = asyncio.create_task(scrape())
                    for _ in range(20):  # let it run up to its broker read
                        await asyncio.sleep(0)
                return {}

        consumer = SimpleNamespace(assignment=lambda: {tp}, highwater=lambda t: None)
        pipeline = SimpleNamespace(
            app=SimpleNamespace(consumer=consumer),
            source_topics={tp.topic},
            committed_offsets=Offsets(),
            sensor=ProgressSensor(),
            cfg=SimpleNamespace(stall_seconds=60.0, commit_stall_seconds=300.0),
            watermarks=Watermarks(),
            prefix="pf",
        )
        gate.set()
        first = await scrape()
        assert second is not None
        gate.set()
        return first, await second

    first, second = asyncio.run(go())
    assert lag_series(first) == ['practiceflow_consumer_lag{partition="0",topic="pf.raw.race"} 3.0']
    assert lag_series(second) == lag_series(first)


def test_pilot_gauges_sum_the_pilot_tables_running_counts_per_practice_and_workflow():
    from practiceflow.streams.metrics import sum_pilot_counts

    table = {
        "count:clinic-a|fax|fax.lab_result|fax-tfidf|1": '{"agree": 3, "disagree": 1, "minutes_saved": 9.0}',
        "count:clinic-a|fax|fax.referral|fax-tfidf|1": '{"agree": 1, "no_verdict": 2, "minutes_saved": 3.0}',
        "count:clinic-b|refill|refill.routine|refill.routine|2": '{"disagree": 2, "minutes_saved": 0.0}',
        "seen:clinic-a/fax:abc": "agree",  # an item already counted, not a count
    }
    items, minutes = sum_pilot_counts(table)
    assert items[("clinic-a", "fax", "agree")] == 4 and items[("clinic-a", "fax", "disagree")] == 1
    assert items[("clinic-a", "fax", "no_verdict")] == 2 and items[("clinic-b", "refill", "disagree")] == 2
    assert items[("clinic-b", "refill", "agree")] == 0  # every verdict has a series, so ratios are defined
    assert minutes == {("clinic-a", "fax"): 12.0, ("clinic-b", "refill"): 0.0}
