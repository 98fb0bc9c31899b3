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
