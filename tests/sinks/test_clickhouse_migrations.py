"""ClickHouse schema migrations (sinks/clickhouse_migrations): from an empty database, from
main's schema before migrations (0001), after a crash inside 0002; partitions, retention
(TTL) and exactly-once rows across partitions. Real chdb."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import clickhouse_connect
import pytest

from practiceflow.processors.audit import audit_event, chain
from practiceflow.sinks import clickhouse_migrations as migrations
from practiceflow.sinks.clickhouse import TABLE_KEYS, ClickHouseSink, rows_for

baseline = importlib.import_module("practiceflow.sinks.clickhouse_migrations.0001_baseline")
partitions = importlib.import_module("practiceflow.sinks.clickhouse_migrations.0002_partitions")
by_bucket = importlib.import_module("practiceflow.sinks.clickhouse_migrations.0007_bucket_partitions")

JAN, FEB, MAR = 1_767_225_600_000, 1_769_904_000_000, 1_772_323_200_000  # 2026-01-01, -02-01, -03-01 (UTC)


def _flow(i: int, at: int) -> dict:
    return {
        "practice_id": "clinic-a",
        "message_id": f"m{i}",
        "feed": "hl7v2",
        "stage": "normalized",
        "record_type": None,
        "records": 1,
        "latency_ms": None,
        "at": at,
    }


def _tables(sink: ClickHouseSink) -> dict[str, tuple[str, str]]:
    return {
        n: (p, k)
        for n, p, k in sink.query(
            "SELECT name, partition_key, sorting_key FROM system.tables WHERE database = %(db)s",
            {"db": sink.database},
        )
    }


def test_migration_files_are_numbered_once_from_one():
    found = migrations.discover()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert {"baseline", "partitions", "workflow_tables"} <= {m.name for m in found}


def test_an_empty_database_gets_every_table_partitioned_and_keyed_and_a_restart_applies_nothing(tmp_path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    sink = ClickHouseSink(dsn)
    try:
        assert [v for (v,) in sink.query("SELECT version FROM {db}.schema_migrations ORDER BY version")] == [
            m.version for m in migrations.discover()
        ]
        tables = _tables(sink)
        for table, key in TABLE_KEYS.items():  # the key the row builders and the reconcilers assume
            assert tables[table][1].replace(" ", "") == ",".join(key), table
            assert "cityHash64(practice_id)" in tables[table][0], table
            # what the sink's exactly-once rows read and write (a new table without them crash-loops the sink)
            columns = {
                c
                for (c,) in sink.query(
                    f"SELECT name FROM system.columns WHERE database = 'practiceflow' AND table = '{table}'"
                )
            }
            assert {
                "kafka_topic",
                "kafka_partition",
                "kafka_offset",
                "origin_topic",
                "origin_partition",
                "origin_offset",
                "origin_seq",
                "origin_key",
            } <= columns, table
        assert sink.ensure_schema() == []  # nothing left to apply
    finally:
        sink.close()


def test_every_table_a_row_builder_writes_is_created_by_a_migration():
    """A new table must come with a migration and a TABLE_KEYS entry (README "ClickHouse analytics")."""
    written = {
        t
        for rt, v in [
            ("HandoffItem", {"practice_id": "p", "item_id": "i", "workflow": "w", "queue": "q", "priority": "r"}),
            ("StaffDecision", {"practice_id": "p", "decision_id": "d", "item_id": "i", "option": "o", "actor": "a"}),
        ]
        for t, _ in rows_for(rt, {**v, "title": "t", "created_at": 1, "decided_at": 1}, 1)
    }
    assert written <= set(TABLE_KEYS)


def _pre_migration_database(dsn: str, rows: list) -> None:
    """main before the migrations: ensure_schema's tables (0001, frozen) with rows, no schema_migrations."""
    client = clickhouse_connect.get_client(dsn=dsn)
    ctx = migrations.MigrationContext(client, "practiceflow")
    ctx.command("CREATE DATABASE IF NOT EXISTS {db}")
    baseline.migrate(ctx)
    for table, row in rows:
        client.insert(f"practiceflow.{table}", [list(row.values())], column_names=list(row))
    client.close()


def test_main_before_migrations_is_upgraded_keeping_rows_and_exactly_once_marks(tmp_path):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_upgrade, str(tmp_path)).result()


def _upgrade(tmp: str) -> None:
    dsn = f"chdb://{tmp}/ch"
    batch = [("FlowEvent", _flow(i, JAN if i < 5 else MAR), ("pf.analytics.flow", 0, i)) for i in range(10)]
    old_rows = []
    for rt, value, pos in batch:
        for table, row in rows_for(rt, value, JAN):
            row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = pos
            old_rows.append((table, row))
    _pre_migration_database(dsn, old_rows)
    sink = ClickHouseSink(dsn)
    try:
        tables = _tables(sink)
        assert tables["flow_events"][0].replace(" ", "") == "(cityHash64(practice_id)%8,toYYYYMM(at))"
        assert not [t for t in tables if t.endswith("_before_0002")]  # copied, then dropped
        assert sink.query("SELECT count() FROM {db}.flow_events") == [(10,)]
        parts = sink.query(
            "SELECT uniqExact(partition) FROM system.parts WHERE database = 'practiceflow' "
            "AND table = 'flow_events' AND active"
        )
        assert parts == [(2,)]  # January and March
        # the sink re-reads a batch it had written before the upgrade: nothing is added
        assert sink.write_batch(batch, MAR) == {"flow_events": 10}
        assert sink.query("SELECT count() FROM {db}.flow_events") == [(10,)]
    finally:
        sink.close()


def test_a_crash_inside_0002_is_finished_at_the_next_start_without_loss(tmp_path):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_crash_in_0002, str(tmp_path)).result()


def _crash_in_0002(tmp: str) -> None:
    dsn = f"chdb://{tmp}/ch"
    rows = []
    for i in range(6):
        for table, row in rows_for("FlowEvent", _flow(i, JAN), JAN):
            row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = "pf.analytics.flow", 0, i
            rows.append((table, row))
    _pre_migration_database(dsn, rows)
    client = clickhouse_connect.get_client(dsn=dsn)
    # 0002 had renamed flow_events aside, created the partitioned table and copied part of it, then died
    client.command("RENAME TABLE practiceflow.flow_events TO practiceflow.flow_events_before_0002")
    client.command(
        "CREATE TABLE practiceflow.flow_events AS practiceflow.flow_events_before_0002 ENGINE = "
        f"ReplacingMergeTree(at) PARTITION BY {partitions.practice_month('at')} "
        "ORDER BY (practice_id, feed, stage, message_id, record_type)"
    )
    client.command("INSERT INTO practiceflow.flow_events SELECT * FROM practiceflow.flow_events_before_0002 LIMIT 2")
    client.close()
    sink = ClickHouseSink(dsn)
    try:
        assert sink.query("SELECT count(), uniqExact(kafka_offset) FROM {db}.flow_events") == [(6, 6)]
        assert "flow_events_before_0002" not in _tables(sink)
    finally:
        sink.close()


def test_a_batch_half_written_across_partitions_is_completed_exactly_once(tmp_path):
    """One INSERT is atomic per partition only: a crash may leave the March rows of a batch
    (its highest offsets) without the January ones. The old rule, "skip everything at or
    below the table's highest offset", lost the January rows; positions are now checked."""
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        batch = [("FlowEvent", _flow(i, JAN if i % 2 else MAR), ("pf.analytics.flow", 0, i)) for i in range(10)]
        march = [item for item in batch if item[1]["at"] == MAR]
        sink.write_batch(march, MAR)  # the part of the crashed INSERT that reached disk
        sink.forget_marks()  # as after a restart
        assert sink.write_batch(batch, MAR) == {"flow_events": 10}
        assert sink.query("SELECT count(), uniqExact(kafka_offset) FROM {db}.flow_events") == [(10, 10)]
        assert sink.write_batch(batch, MAR) == {"flow_events": 10}  # and once more: nothing added
        assert sink.query("SELECT count() FROM {db}.flow_events") == [(10,)]
    finally:
        sink.close()


def test_audit_is_kept_six_years_by_default_and_retention_follows_the_settings(tmp_path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    now = datetime.now(tz=UTC).timestamp() * 1000
    year = 365.25 * 86_400_000
    events = []
    for i, age in enumerate((7, 5, 0)):
        ev = audit_event(
            "p", actor="t", action="x", entity_type="m", entity_id=str(i), reason="r", at=int(now - age * year)
        )
        events.append(("AuditEvent", chain(None, ev), ("pf.audit", 0, i)))
    sink = ClickHouseSink(dsn, audit_retention_days=2192, retention_days=400)
    try:
        engines = dict(sink.query("SELECT name, engine_full FROM system.tables WHERE database = 'practiceflow'"))
        assert "toIntervalDay(2192)" in engines["audit_events"] and "toIntervalDay(400)" in engines["flow_events"]
        sink.write_batch(events, int(now))
        sink.client.command("OPTIMIZE TABLE practiceflow.audit_events FINAL")  # TTL applies at merges
        assert sink.query("SELECT entity_id FROM {db}.audit_events ORDER BY entity_id") == [("1",), ("2",)]
    finally:
        sink.close()
    reader = ClickHouseSink(dsn)  # no retention given (a reader: audit verify): the TTLs stay
    try:
        engines = dict(reader.query("SELECT name, engine_full FROM system.tables WHERE database = 'practiceflow'"))
        assert "toIntervalDay(2192)" in engines["audit_events"] and "toIntervalDay(400)" in engines["flow_events"]
    finally:
        reader.close()
    kept = ClickHouseSink(dsn, audit_retention_days=0)  # 0: kept for ever (the TTL is removed)
    try:
        engines = dict(kept.query("SELECT name, engine_full FROM system.tables WHERE database = 'practiceflow'"))
        assert " TTL " not in engines["audit_events"] and "toIntervalDay(400)" in engines["flow_events"]
    finally:
        kept.close()


def test_workflow_topics_land_without_free_text(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    item = {
        "practice_id": "p",
        "item_id": "refill:1",
        "workflow": "refill",
        "queue": "clinician",
        "priority": "routine",
        "title": "t",
        "created_at": JAN,
        "kind": "refill.routine",
        "source": {"feed": "portal", "message_id": "m1"},
    }
    batch = [
        ("HandoffItem", {**item, "revision": 1}, ("pf.handoff", 0, 0)),
        (
            "HandoffItem",
            {**item, "revision": 2, "state": "done", "outcome": "approve", "updated_at": JAN + 60_000},
            ("pf.handoff", 0, 1),
        ),
        (
            "StaffDecision",
            {
                "practice_id": "p",
                "decision_id": "d1",
                "item_id": "refill:1",
                "option": "edit",
                "actor": "u7",
                "edits": {"sig": "SECRET-SIG"},
                "comment": "SECRET-COMMENT",
                "channel": "cli",
                "decided_at": JAN + 60_000,
            },
            ("pf.decisions", 0, 0),
        ),
        (
            "Draft",
            {
                "practice_id": "p",
                "draft_id": "dr1",
                "item_id": "refill:1",
                "workflow": "refill",
                "kind": "fhir.MedicationRequest",
                "content_type": "application/fhir+json",
                "body": "SECRET-BODY",
                "created_at": JAN,
            },
            ("pf.drafts", 0, 0),
        ),
        (
            "CommandResult",
            {
                "practice_id": "p",
                "command_id": "c1",
                "kind": "eligibility",
                "workflow": "intake",
                "outcome": "ok",
                "payload": "SECRET-271",
                "attempts": 2,
                "latency_ms": 40.0,
                "completed_at": JAN,
            },
            ("pf.cmd.results", 0, 0),
        ),
        (
            "EligibilityResponse",
            {
                "practice_id": "p",
                "response_id": "r1",
                "patient_id": "MRN1",
                "payer_id": "P1",
                "member_id": "SECRET-MEMBER",
                "patient_name": "SECRET NAME",
                "active": True,
                "benefits": [{"info_code": "1", "authorization_required": True}],
                "source": {"feed": "x12", "message_id": "m2"},
            },
            ("pf.norm.eligibility", 0, 0),
        ),
    ]
    try:
        written = sink.write_batch(batch, JAN)
        assert written == {
            "handoff_items": 2,
            "work_item_events": 2,
            "decisions": 1,
            "drafts": 1,
            "command_results": 1,
            "records": 1,
            "eligibility_results": 1,
        }
        assert sink.query("SELECT revision, state FROM {db}.work_item_events ORDER BY revision") == [
            (1, "open"),
            (2, "done"),
        ]
        assert sink.query("SELECT edited_fields FROM {db}.decisions") == [(["sig"],)]
        assert sink.query("SELECT active, authorization_required FROM {db}.eligibility_results") == [(True, True)]
        dump = "".join(repr(sink.query(f"SELECT * FROM {{db}}.{t}")) for t in TABLE_KEYS)
        assert "SECRET" not in dump
    finally:
        sink.close()


def test_practiceflow_sink_migrate_only_applies_the_migrations_and_exits(tmp_path):
    """The deploy step: no Kafka needed, the settings' retention applied, exit 0."""
    dsn = f"chdb://{tmp_path / 'ch'}"
    env = dict(os.environ, PRACTICEFLOW_CLICKHOUSE_DSN=dsn, PRACTICEFLOW_STATE_DIR=str(tmp_path))
    env.pop("PRACTICEFLOW_KAFKA_BOOTSTRAP", None)
    done = subprocess.run(
        [sys.executable, "-m", "practiceflow.cli", "sink", "--migrate-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sink = ClickHouseSink(dsn)
    try:
        assert [v for (v,) in sink.query("SELECT version FROM {db}.schema_migrations ORDER BY version")] == [
            m.version for m in migrations.discover()
        ]
        engine = sink.query(
            "SELECT engine_full FROM system.tables WHERE database = 'practiceflow' AND name = 'audit_events'"
        )
        assert "toIntervalDay(2192)" in engine[0][0]  # six years: the settings' default
    finally:
        sink.close()


# what every landed migration file hashes to: a database records it when it applies the file, and
# never applies an edited file again (README "ClickHouse analytics": fix forward with a new file).
# A new migration adds its line here once it lands.
LANDED = {
    1: "cdb7830bf331e4a4f7050462a8aa645ecdd6721ae259db8d02e77312ca57f43e",
    2: "719bf4d23a06d464faa8f06cade41b25b7a7b5e629a2cc58d92f7e113df84b36",  # amended (S17 docstring, s19 M3)
    3: "ef4a9baa62137560084ee154a61c25cb0f1b34baae5a68947895efc74af9025c",
    4: "75c2d7894bd04a6fe464727f79d3af3b022151129bd1d8dc5585265655b02934",
    5: "669ceecbd383ea24f0cf3044b4f215a61105462483ce8d996e3ddbc41ae29769",
    6: "4c458bc05c4ff9b621d96b5cfba79dd12f73c745051a7ce48dfec079181bdd82",
    7: "4ec2ad0a55aa0ef612b6751fa059aff2aee3d617b2242677a7260565f05ef098",  # amended (s19 M3)
    8: "9bc4717dfec197a03785e98db5a71649ceb83952c77183c168b1b938631b4335",
}


# files corrected after they landed (docstrings; s19 M3: 0002/0007 no longer TRUNCATE, which leaves a
# database that finished them as it was): the checksums databases may have recorded
AMENDED = {
    2: {
        "a9302212049309da5a1c637efa696c8bdf3b8c9628a1cd07c4fb3c0e7f9e5695",
        "aaac1292b8d5716f97c35cc2c45e06a118318c37118f0d5a199e74244982d1cd",
    },
    7: {"708981054a0ca8632fae81669039a81e93d5624cc85fc4511a8ebb6ac744860c"},
}


def test_landed_migrations_are_never_edited():
    found = {m.version: m.checksum for m in migrations.discover()}
    assert {v: found.get(v) for v in LANDED} == LANDED
    assert {m.version: set(m.amended_from) for m in migrations.discover() if m.amended_from} == AMENDED


def test_a_database_that_applied_an_amended_file_counts_it_as_applied_without_a_warning(tmp_path, caplog):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    try:
        found = migrations.discover()
        migrations.apply_migrations(client, "practiceflow", found)
        # as recorded by a database that applied 0002 before its docstring was corrected
        client.command(
            "ALTER TABLE practiceflow.schema_migrations UPDATE checksum = %(c)s WHERE version = 2",
            parameters={"c": next(iter(AMENDED[2]))},
            settings={"mutations_sync": 2},
        )
        assert migrations.applied(client, "practiceflow")[2] in AMENDED[2]
        with caplog.at_level("WARNING", logger="practiceflow.clickhouse.migrations"):
            assert migrations.apply_migrations(client, "practiceflow", found) == []
        assert "changed after it was applied" not in caplog.text
    finally:
        client.close()


def _patient(patient_id: str = "MRN1") -> dict:
    from practiceflow.schemas import models

    src = models.SourceRef(feed="hl7v2", message_id=f"m-{patient_id}")
    return models.Patient(practice_id="clinic-a", patient_id=patient_id, source=src).model_dump()


def test_versions_of_one_key_written_in_different_months_merge_on_optimize(tmp_path):
    """Review S17: the written_at tables were partitioned by the month of written_at (the sink's
    clock), so a patient written in January and again in February kept both versions on disk:
    merges never cross partitions. Now the tables are by practice bucket only."""
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        sink.write_batch([("Patient", _patient(), ("pf.norm.patient", 0, 1))], JAN)
        sink.write_batch([("Patient", _patient(), ("pf.norm.patient", 0, 2))], FEB)
        assert sink.query("SELECT count() FROM {db}.records") == [(2,)]
        sink.client.command(f"OPTIMIZE TABLE {sink.database}.records FINAL")
        rows = sink.query("SELECT kafka_offset, toYYYYMM(written_at) FROM {db}.records")
        assert rows == [(2, 202602)]  # one row on disk: the newer version
    finally:
        sink.close()


def test_0007_repartitions_by_bucket_keeping_rows_retention_and_positions(tmp_path):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_upgrade_to_0007, str(tmp_path)).result()


def test_a_crash_inside_0007_is_finished_at_the_next_start_without_loss(tmp_path):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_crash_in_0007, str(tmp_path)).result()


def _crash_in_0007(tmp: str) -> None:
    dsn = f"chdb://{tmp}/ch"
    client = clickhouse_connect.get_client(dsn=dsn)
    migrations.apply_migrations(client, "practiceflow", [m for m in migrations.discover() if m.version <= 6])
    for i in range(6):
        for table, row in rows_for("Patient", _patient(f"MRN{i}"), JAN if i % 2 else FEB):
            row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = "pf.norm.patient", 0, i
            client.insert(f"practiceflow.{table}", [list(row.values())], column_names=list(row))
    # 0007 had renamed records aside, created the new table and copied part of it, then died
    client.command("RENAME TABLE practiceflow.records TO practiceflow.records_before_0007")
    client.command(
        "CREATE TABLE practiceflow.records AS practiceflow.records_before_0007 ENGINE = "
        f"ReplacingMergeTree(written_at) PARTITION BY {by_bucket.BY_BUCKET} "
        "ORDER BY (practice_id, patient_id, record_type, key)"
    )
    client.command("INSERT INTO practiceflow.records SELECT * FROM practiceflow.records_before_0007 LIMIT 2")
    client.close()
    sink = ClickHouseSink(dsn)
    try:
        assert sink.query("SELECT count(), uniqExact(kafka_offset) FROM {db}.records") == [(6, 6)]
        assert "records_before_0007" not in _tables(sink)
    finally:
        sink.close()


def _upgrade_to_0007(tmp: str) -> None:
    dsn = f"chdb://{tmp}/ch"
    client = clickhouse_connect.get_client(dsn=dsn)
    migrations.apply_migrations(client, "practiceflow", [m for m in migrations.discover() if m.version <= 6])
    migrations.apply_retention(client, "practiceflow", audit_days=None, records_days=400)
    batch = [("Patient", _patient(p), ("pf.norm.patient", 0, i)) for i, p in enumerate(("MRN1", "MRN2"))]
    for when, shift in ((JAN, 0), (FEB, 10)):  # each patient written in January, then again in February
        for rt, value, (topic, partition, offset) in batch:
            for table, row in rows_for(rt, value, when):
                row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = topic, partition, offset + shift
                client.insert(f"practiceflow.{table}", [list(row.values())], column_names=list(row))
    client.command("OPTIMIZE TABLE practiceflow.records FINAL")
    assert client.query("SELECT count() FROM practiceflow.records").result_rows == [(4,)]  # at 0006: never merged
    client.close()

    sink = ClickHouseSink(dsn)  # applies 0007, leaves the TTLs as they are
    try:
        tables = _tables(sink)
        for table in by_bucket.TABLES:
            assert tables[table][0].replace(" ", "") == "cityHash64(practice_id)%8", table
            assert f"{table}_before_0007" not in tables
        for table in ("handoff_items", "flow_events", "audit_events"):  # stable times keep their months
            assert "toYYYYMM" in tables[table][0], table
        ttl = sink.query("SELECT engine_full FROM system.tables WHERE database = 'practiceflow' AND name = 'records'")
        assert "toDateTime(written_at) + toIntervalDay(400)" in ttl[0][0]  # the row TTL carried over
        # every key copied (a merge may already have collapsed versions: now they share a partition)
        assert sink.query("SELECT count() FROM {db}.records FINAL") == [(2,)]
        sink.client.command(f"OPTIMIZE TABLE {sink.database}.records FINAL")
        assert sorted(sink.query("SELECT patient_id, kafka_offset FROM {db}.records")) == [("MRN1", 10), ("MRN2", 11)]
        # the sink re-reads a batch it had written before the upgrade: nothing is added
        again = [(rt, v, (t, p, o + 10)) for rt, v, (t, p, o) in batch]
        assert sink.write_batch(again, MAR) == {"records": 2}
        assert sink.query("SELECT count() FROM {db}.records") == [(2,)]
    finally:
        sink.close()


def test_a_server_migrates_under_a_lock_that_only_a_pending_migration_waits_for(tmp_path):
    """Against a server several sinks may start at once: one takes the lock table, the others wait.
    A lock left by a killed migrator stops the next migration with a clear message, never a restart."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'ch'}")
    try:
        client.command("CREATE DATABASE practiceflow")
        client.command("CREATE TABLE practiceflow.schema_migrations_lock (owner String) ENGINE = Memory")
        with pytest.raises(RuntimeError, match="schema_migrations_lock"):
            migrations.apply_migrations(client, "practiceflow", lock=True, lock_wait_s=1.0)
        assert migrations.applied(client, "practiceflow") == {}  # nothing ran without the lock
        client.command("DROP TABLE practiceflow.schema_migrations_lock")
        assert migrations.apply_migrations(client, "practiceflow", lock=True) == [
            m.version for m in migrations.discover()
        ]
        tables = {t for (t,) in client.query("SHOW TABLES FROM practiceflow").result_rows}
        assert "schema_migrations_lock" not in tables  # released
        client.command("CREATE TABLE practiceflow.schema_migrations_lock (owner String) ENGINE = Memory")
        assert migrations.apply_migrations(client, "practiceflow", lock=True, lock_wait_s=1.0) == []  # no wait
    finally:
        client.close()


@dataclass
class _LiveWriter(migrations.MigrationContext):
    """A server where another writer (an old sink in a rolling upgrade, a Kafka-engine view that follows
    the table by name) inserts ``pending`` into ``table`` right after the migration's ``after`` statement."""

    table: str = ""
    after: str = ""  # "CREATE": right after the new table is created; "INSERT": right after the copy
    pending: list = field(default_factory=list)

    def command(self, sql: str) -> None:
        super().command(sql)
        if self.pending and sql.startswith(f"{self.after} ") and f"{{db}}.{self.table} " in sql:
            for row in self.pending:
                self.client.insert(f"{self.database}.{self.table}", [list(row.values())], column_names=list(row))
            self.pending = []


@pytest.mark.parametrize("after", ["CREATE", "INSERT"])
def test_rows_a_live_writer_adds_while_0007_runs_are_kept_and_0007_finishes(tmp_path, after):
    """Review s19 M3: 0007 TRUNCATEd the new table (deleting a row a live writer had committed right
    after the CREATE) and required equal key counts (a row written after the copy failed it on every
    retry). Now it copies only what the new table lacks and checks the set-aside keys are a subset."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_live_writer_in_0007, str(tmp_path), after).result()


def _live_writer_in_0007(tmp: str, after: str) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp}/ch")
    try:
        migrations.apply_migrations(client, "practiceflow", [m for m in migrations.discover() if m.version <= 6])
        for i in range(3):
            for table, row in rows_for("Patient", _patient(f"MRN{i}"), JAN):
                row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = "pf.norm.patient", 0, i
                client.insert(f"practiceflow.{table}", [list(row.values())], column_names=list(row))
        live = [row for table, row in rows_for("Patient", _patient("MRN9"), FEB) if table == "records"]
        live[0]["kafka_topic"], live[0]["kafka_partition"], live[0]["kafka_offset"] = "pf.norm.patient", 0, 9
        ctx = _LiveWriter(client, "practiceflow", table="records", after=after, pending=live)
        by_bucket.migrate(ctx)
        assert not ctx.pending  # the writer did write
        rows = client.query("SELECT patient_id, kafka_offset FROM practiceflow.records").result_rows
        assert sorted(rows) == [("MRN0", 0), ("MRN1", 1), ("MRN2", 2), ("MRN9", 9)]
        tables = {t for (t,) in client.query("SHOW TABLES FROM practiceflow").result_rows}
        assert "records_before_0007" not in tables
        info = migrations.MigrationContext(client, "practiceflow").table_info("records")
        assert info is not None and info[0].replace(" ", "") == by_bucket.BY_BUCKET.replace(" ", "")
    finally:
        client.close()


def test_a_resumed_0002_keeps_the_rows_a_live_writer_added(tmp_path):
    """Review s19 M3 in 0002 (same procedure): a resumed or first run TRUNCATEd rows another writer had put
    into the new table. 0002 has run on most databases; this is what a resume would do."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_live_writer_in_0002, str(tmp_path)).result()


def _live_writer_in_0002(tmp: str) -> None:
    dsn = f"chdb://{tmp}/ch"
    rows = []
    for i in range(4):
        for table, row in rows_for("FlowEvent", _flow(i, JAN), JAN):
            row["kafka_topic"], row["kafka_partition"], row["kafka_offset"] = "pf.analytics.flow", 0, i
            rows.append((table, row))
    _pre_migration_database(dsn, rows)
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        live = [row for table, row in rows_for("FlowEvent", _flow(9, MAR), MAR) if table == "flow_events"]
        live[0]["kafka_topic"], live[0]["kafka_partition"], live[0]["kafka_offset"] = "pf.analytics.flow", 0, 9
        ctx = _LiveWriter(client, "practiceflow", table="flow_events", after="CREATE", pending=live)
        partitions.migrate(ctx)
        assert not ctx.pending
        rows_now = client.query("SELECT message_id, kafka_offset FROM practiceflow.flow_events").result_rows
        assert sorted(rows_now) == [("m0", 0), ("m1", 1), ("m2", 2), ("m3", 3), ("m9", 9)]
        tables = {t for (t,) in client.query("SHOW TABLES FROM practiceflow").result_rows}
        assert not [t for t in tables if t.endswith("_before_0002")]
    finally:
        client.close()
