"""The de-dup retention policy (pure part; the broker test is in tests/streams/test_pipeline.py)."""

from __future__ import annotations

from practiceflow.processors.dedup import sweep, sweep_due

DAY = 86_400_000


def test_sweep_runs_once_per_tenth_of_the_retention_of_event_time():
    assert sweep_due(None, 5, 7 * DAY)
    assert not sweep_due(1_000, 1_000 + 7 * DAY // 10 - 1, 7 * DAY)
    assert sweep_due(1_000, 1_000 + 7 * DAY // 10, 7 * DAY)
    assert sweep_due(0, 1, 5)  # tiny retentions still sweep (interval at least 1 ms)


def test_sweep_keeps_fresh_ids_and_other_partitions_ids_and_restamps_legacy_ones():
    entries = [("a/hl7v2/1", 100), ("b/hl7v2/2", 100), ("a/x12/3", 900), ("a/fax/legacy", 1), ("b/fax/old", 1)]
    forget, restamp = sweep(entries, cutoff_ms=500, owned=lambda k: k.startswith("a/"))
    assert forget == ["a/hl7v2/1"] and restamp == ["a/fax/legacy"]
    assert sweep(entries, cutoff_ms=50, owned=lambda k: True) == ([], ["a/fax/legacy", "b/fax/old"])
