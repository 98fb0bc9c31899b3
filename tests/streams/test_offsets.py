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


def test_outbox_without_a_producer_deletes_with_a_tombstone_not_json_null():
    """``Outbox()`` (Faust's producer, the low-volume workflow agents): a delete must go out as a
    tombstone (the raw serializer's None), not through the table's json serializer, which writes
    ``b"null"`` and brings the key back, holding None, when the table is restored."""
    import asyncio

    from practiceflow.streams.offsets import Outbox

    class _Table:
        def __init__(self) -> None:
            self.data = {"gone": 1, "kept": 2}
            self.sent: list[tuple] = []

        def send_changelog(self, partition, key, value, value_serializer=None):
            self.sent.append((partition, key, value, value_serializer))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result((partition, key))
            return fut

    class _Msg:
        partition = 1

    class _Ev:
        message = _Msg()

    async def go(table: _Table) -> None:
        box = Outbox()
        box.table_write(table, _Ev(), "gone", None)
        box.table_write(table, _Ev(), "kept", 3)
        await box.confirm()

    table = _Table()
    asyncio.run(go(table))
    assert table.data == {"kept": 3}
    assert table.sent == [(1, "gone", None, "raw"), (1, "kept", 3, None)]
