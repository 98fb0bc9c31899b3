"""The commit ledger (pure) and the catalog's retention rules."""

from __future__ import annotations

from faust.types import TP

from practiceflow.streams import catalog
from practiceflow.streams.offsets import OffsetLedger


def test_ledger_commits_only_contiguous_done_offsets():
    tp = TP("pf.raw.hl7v2", 0)
    ledger = OffsetLedger()
    ledger.start(tp, 100)
    assert ledger.committable() == {}
    ledger.done(tp, 101)  # 100 not done: nothing may be committed (Faust would commit 102 here)
    assert ledger.expected(tp) == 100 and ledger.committable() == {}
    ledger.done(tp, 100)
    assert ledger.expected(tp) == 102 and ledger.committable() == {tp: 102}
    ledger.committed({tp: 102})
    assert ledger.committable() == {}
    ledger.done(tp, 50)  # an old offset delivered again changes nothing
    assert ledger.expected(tp) == 102


def test_ledger_from_zero_never_skips_the_head():
    tp = TP("t", 1)
    ledger = OffsetLedger()
    ledger.start(tp, 0)
    for off in (3, 2, 1):
        ledger.done(tp, off)
    assert ledger.committable() == {}
    ledger.done(tp, 0)
    assert ledger.committable() == {tp: 4}


def test_patient_and_coverage_topics_are_compacted_and_never_deleted_by_age():
    for rt in ("Patient", "Coverage"):
        spec = catalog.normalized_topic(rt)
        assert spec.topic_config() == {"cleanup.policy": "compact", "retention.ms": "-1"}
    assert catalog.BY_SUFFIX["handoff"].topic_config()["cleanup.policy"] == "compact,delete"
    assert catalog.normalized_topic("Observation").topic_config()["cleanup.policy"] == "delete"
    assert {f"retry.{f}" for f in catalog.FEEDS} <= set(catalog.BY_SUFFIX)
    for feed in catalog.FEEDS:
        assert catalog.BY_SUFFIX[f"retry.{feed}"].record_type == "RawMessage"
