"""ClickHouse rows: exactly once by Kafka position, audit keyed by event id, old keys set aside (real chdb)."""

from __future__ import annotations

from practiceflow.processors.audit import audit_event, chain
from practiceflow.sinks.clickhouse import ClickHouseSink, rows_for


def _flow(i: int) -> dict:
    return {
        "practice_id": "clinic-a",
        "message_id": f"m{i}",
        "feed": "hl7v2",
        "stage": "normalized",
        "record_type": None,
        "records": 1,
        "latency_ms": None,
        "at": 1_700_000_000_000 + i,
    }


def test_a_batch_written_again_adds_no_rows_and_audit_is_keyed_by_event_id(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        _rows_once(sink, tmp_path)
    finally:
        sink.close()  # chdb: one engine path per process


def _rows_once(sink: ClickHouseSink, tmp_path) -> None:
    ev = audit_event("clinic-a", actor="t", action="x", entity_type="m", entity_id="1", reason="r", at=7)
    batch = [("FlowEvent", _flow(i), ("pf.analytics.flow", 0, i)) for i in range(10)]
    batch += [
        ("AuditEvent", chain(None, ev), ("pf.audit", 0, 0)),
        ("AuditEvent", chain("a" * 64, ev), ("pf.audit", 0, 1)),
    ]
    assert sink.write_batch(batch[:6], 1) == {"flow_events": 6}
    # the crash case: the whole batch again (6 rows already there), then a fresh instance re-reads the marks
    assert sink.write_batch(batch, 2) == {"flow_events": 10, "audit_events": 2}
    again = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        assert again.write_batch(batch, 3) == {"flow_events": 10, "audit_events": 2}
        assert again.query("SELECT count() FROM {db}.flow_events")[0][0] == 10
        assert again.query("SELECT count() FROM {db}.audit_events FINAL")[0][0] == 1  # the chain's duplicate
    finally:
        again.close()


def test_a_table_with_an_old_key_is_set_aside_and_recreated(tmp_path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    first = ClickHouseSink(dsn)
    first.client.command("DROP TABLE practiceflow.audit_events")
    first.client.command("DROP TABLE practiceflow.schema_migrations")  # a database from before the migrations
    first.client.command(
        "CREATE TABLE practiceflow.audit_events (practice_id String, event_id String, at DateTime64(3, 'UTC'), "
        "actor String, action String, entity_type String, entity_id String, reason String, outcome String, "
        "prev_hash String, hash String) ENGINE = ReplacingMergeTree(at) ORDER BY (practice_id, hash)"
    )
    first.close()
    sink = ClickHouseSink(dsn)
    keys = dict(sink.query("SELECT name, sorting_key FROM system.tables WHERE database = 'practiceflow'"))
    sink.close()
    assert keys["audit_events"].replace(" ", "") == "practice_id,event_id,at"
    assert any(
        k.startswith("audit_events_before_") and v.replace(" ", "") == "practice_id,hash" for k, v in keys.items()
    )


def test_work_items_keep_their_latest_revision_and_an_old_table_is_re_versioned(tmp_path):
    """handoff_items is versioned by the item's revision: a replayed revision 1 written after
    revision 2 must not reopen a closed item. A table from before (versioned by created_at)
    is set aside once, its rows copied, and a second start changes nothing."""
    dsn = f"chdb://{tmp_path / 'ch'}"
    first = ClickHouseSink(dsn)
    first.client.command("DROP TABLE practiceflow.handoff_items")
    first.client.command("DROP TABLE practiceflow.schema_migrations")  # a database from before the migrations
    first.client.command(
        "CREATE TABLE practiceflow.handoff_items (practice_id LowCardinality(String), item_id String, "
        "workflow LowCardinality(String), queue LowCardinality(String), priority LowCardinality(String), "
        "title String, patient_id String, subject_type String, subject_id String, evidence_count UInt16, "
        "created_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(created_at) ORDER BY (practice_id, item_id)"
    )
    first.client.command(
        "INSERT INTO practiceflow.handoff_items (practice_id, item_id, workflow, queue, priority, title) "
        "VALUES ('p1', 'old:1', 'results_review', 'clinician', 'routine', 'old item')"
    )
    first.close()
    sink = ClickHouseSink(dsn)
    try:
        tables = [t for (t,) in sink.query("SELECT name FROM system.tables WHERE database = 'practiceflow'")]
        assert len([t for t in tables if t.startswith("handoff_items_before_")]) == 1
        assert sink.query("SELECT item_id, revision FROM {db}.handoff_items")[0] == ("old:1", 1)
        base = {
            "practice_id": "p1",
            "item_id": "refill:1",
            "workflow": "refill",
            "queue": "clinician",
            "priority": "routine",
            "title": "t",
            "created_at": 1_000,
        }
        closed = rows_for("HandoffItem", {**base, "state": "done", "revision": 2}, 2_000)[0][1]
        replayed = rows_for("HandoffItem", {**base, "state": "open", "revision": 1}, 3_000)[0][1]
        sink.insert("handoff_items", [closed])
        sink.insert("handoff_items", [replayed])
        state = sink.query("SELECT state, revision FROM {db}.handoff_items FINAL WHERE item_id = 'refill:1'")
        assert state == [("done", 2)]
    finally:
        sink.close()
    again = ClickHouseSink(dsn)  # a second start: the table is current, nothing is set aside again
    try:
        tables = [t for (t,) in again.query("SELECT name FROM system.tables WHERE database = 'practiceflow'")]
        assert len([t for t in tables if t.startswith("handoff_items_before_")]) == 1
    finally:
        again.close()


def test_a_workers_replayed_outputs_at_new_offsets_add_no_rows(tmp_path):
    """Issue 8: a worker killed between a batch's confirmed outputs and its de-dup marks handles
    the batch again and sends the same outputs at NEW offsets. Named by their input (origin:
    raw topic, partition, offset, output seq), they are written once; outputs of other inputs,
    other outputs of the same input, and records without an origin are all kept."""
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        raw = "pf.raw.hl7v2"

        def out(i: int, offset: int, at_shift: int = 0, seq: int = 0, stage: str = "normalized"):
            flow = dict(_flow(i), stage=stage, at=_flow(i)["at"] + at_shift)
            return ("FlowEvent", flow, ("pf.analytics.flow", 0, offset), (raw, 0, 100 + i, seq))

        first = [out(i, i) for i in range(10)] + [out(3, 10, seq=1, stage="duplicate")]  # two outputs of input 3
        assert sink.write_batch(first, 1) == {"flow_events": 11}
        # the replay: inputs 6..9 again at offsets 11..14 (a later clock in the value), then new inputs 10..11;
        # inputs 10 and 11 also twice within this batch (the replay's copies right behind the originals)
        replay = [out(i, 5 + i, at_shift=50) for i in range(6, 10)]
        replay += [out(10, 15), out(11, 16), out(10, 17, at_shift=9), out(11, 18, at_shift=9)]
        assert sink.write_batch(replay, 2) == {"flow_events": 8}  # all confirmed; 6 of them were there
        assert sink.query("SELECT count() FROM {db}.flow_events")[0][0] == 13  # only inputs 10 and 11 are new
        # a restarted sink (marks read back from the table) meets another copy of input 2's output
        again = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
        try:
            again.write_batch([out(2, 19, at_shift=70)], 3)
            assert again.query("SELECT count() FROM {db}.flow_events")[0][0] == 13  # inputs 0..11, input 3 twice
            assert again.query("SELECT count() FROM {db}.flow_events FINAL")[0][0] == 13
            # the first copy is kept (its clock), not the replay's
            assert (
                again.query("SELECT at FROM {db}.flow_events WHERE message_id = 'm7'")[0][0].timestamp()
                == 1_700_000_000.007
            )
        finally:
            again.close()
    finally:
        sink.close()


def test_outputs_that_are_not_copies_are_written_even_at_or_below_the_mark(tmp_path):
    """The other side of skipping copies (review s24 S3): only a row with the same origin, number
    AND sort key as one the table holds is skipped. A missing output below the mark (part of a
    batch that never reached ClickHouse), an output whose number shifted on the replay (a different
    key at the same number), and an output of another input are all written."""
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        raw = "pf.raw.hl7v2"

        def out(i: int, offset: int, origin_offset: int, seq: int = 0, stage: str = "normalized"):
            return (
                "FlowEvent",
                dict(_flow(i), stage=stage),
                ("pf.analytics.flow", 0, offset),
                (raw, 0, origin_offset, seq),
            )

        sink.write_batch([out(1, 0, 100), out(9, 1, 109)], 1)  # the mark is now (109, 0)
        sink.write_batch([out(5, 2, 105, seq=1)], 2)  # below the mark, not in the table: written
        sink.write_batch([out(1, 3, 100, stage="duplicate")], 3)  # input 100's number 0, another key
        sink.write_batch([out(1, 4, 100)], 4)  # a true copy: skipped
        rows = sink.query("SELECT message_id, stage FROM {db}.flow_events ORDER BY kafka_offset")
        assert rows == [("m1", "normalized"), ("m9", "normalized"), ("m5", "normalized"), ("m1", "duplicate")]
    finally:
        sink.close()


def test_a_row_from_before_0008_matches_only_a_re_read_of_its_own_kafka_message(tmp_path):
    """Rows written before the origin columns have no key hash (0), a wildcard; it applies only to
    records named by their own position, never to a named output that happens to share the numbers."""
    from practiceflow.sinks import clickhouse_migrations as migrations

    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        old = [row for _, row in rows_for("FlowEvent", _flow(1), 1)]
        old[0].update(kafka_topic="pf.analytics.flow", kafka_partition=0, kafka_offset=5)
        sink.insert("flow_events", old)  # no origin columns given: the defaults, key 0
        assert migrations.applied(sink.client, sink.database)
        sink.forget_marks()
        named = ("FlowEvent", dict(_flow(2)), ("pf.analytics.flow", 0, 9), ("pf.analytics.flow", 0, 5, 0))
        sink.write_batch([named], 2)
        assert sink.query("SELECT count() FROM {db}.flow_events")[0][0] == 2
    finally:
        sink.close()


def test_a_database_written_before_0008_gains_origins_and_a_re_read_adds_nothing(tmp_path):
    """The real upgrade: tables created and written by migrations 0001-0007 (parts without the
    origin columns, which are then read through their DEFAULTs), then the new sink migrates to
    0008 and re-reads the batch it wrote last."""
    import clickhouse_connect

    from practiceflow.sinks import clickhouse_migrations as migrations

    dsn = f"chdb://{tmp_path / 'ch'}"
    client = clickhouse_connect.get_client(dsn=dsn)
    migrations.apply_migrations(client, "practiceflow", [m for m in migrations.discover() if m.version < 8])
    batch = [("FlowEvent", _flow(i), ("pf.analytics.flow", 0, i)) for i in range(4)]
    rows = [row for _, v, _ in batch for _, row in rows_for("FlowEvent", v, 1)]
    for i, row in enumerate(rows):
        row.update(kafka_topic="pf.analytics.flow", kafka_partition=0, kafka_offset=i)
    cols = list(rows[0])
    client.insert("practiceflow.flow_events", [[r[c] for c in cols] for r in rows], column_names=cols)
    client.close()
    sink = ClickHouseSink(dsn)  # applies 0008
    try:
        got = sink.query("SELECT DISTINCT origin_topic, origin_seq, origin_key FROM {db}.flow_events")
        assert got == [("pf.analytics.flow", 0, 0)]
        assert sink.write_batch(batch, 2) == {"flow_events": 4}
        assert sink.query("SELECT count() FROM {db}.flow_events")[0][0] == 4
    finally:
        sink.close()


def test_rows_written_before_origins_were_recorded_still_stop_a_resend_of_their_batch(tmp_path):
    """Migration 0008 gives old rows their own Kafka position as origin and no key hash
    (origin_key 0, which matches any key): the sink re-reading such a batch adds nothing."""
    from practiceflow.sinks import clickhouse_migrations as migrations

    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        batch = [("FlowEvent", _flow(i), ("pf.analytics.flow", 0, i)) for i in range(4)]
        rows = [row for _, v, _ in batch for _, row in rows_for("FlowEvent", v, 1)]
        for i, row in enumerate(rows):  # as the sink wrote them before 0008: no origin columns given
            row.update(kafka_topic="pf.analytics.flow", kafka_partition=0, kafka_offset=i)
        sink.insert("flow_events", rows)
        assert sink.query("SELECT DISTINCT origin_key, origin_seq FROM {db}.flow_events") == [(0, 0)]
        assert migrations.applied(sink.client, sink.database)  # the table has the 0008 columns
        sink.forget_marks()
        assert sink.write_batch(batch, 2) == {"flow_events": 4}
        assert sink.query("SELECT count() FROM {db}.flow_events")[0][0] == 4
    finally:
        sink.close()
