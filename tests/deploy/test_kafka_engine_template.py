"""deploy/clickhouse/kafka-engine.sql (the Kafka-engine alternative to the sink) parses, and its
materialized views fill the migrated tables with the same rows the sink writes (real chdb).

chdb cannot run the Kafka engine itself (it has no background consumers), so each Kafka table is
created as a Null table with the engine's virtual columns (_topic, _partition, _offset) as real
ones; inserting a decoded record into it fires the views exactly as a consumed message would."""

from __future__ import annotations

import re
from pathlib import Path

from practiceflow.sinks.clickhouse import ClickHouseSink, rows_for
from practiceflow.sinks.clickhouse_migrations import split_statements

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse" / "kafka-engine.sql"
T = 1_780_000_000_000
SSN = "123-45-6789"


def _statements(db: str) -> list[str]:
    text = TEMPLATE.read_text()
    for k, v in {
        "{db}": db,
        "{prefix}": "pf",
        "{brokers}": "kafka:9092",
        "{registry}": "http://r:8081",
        "{group}": "ch",
    }.items():
        text = text.replace(k, v)
    return split_statements(text)


def _as_null_tables(statements: list[str]) -> list[str]:
    out = []
    for s in statements:
        if " ENGINE = Kafka" in s:
            s = re.sub(
                r"\n\) ENGINE = Kafka SETTINGS .*",
                ",\n    _topic String, _partition UInt64, _offset UInt64\n) ENGINE = Null",
                s,
                flags=re.S,
            )
        out.append(s)
    return out


def test_the_template_parses(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        statements = _statements("practiceflow")
        assert len(statements) >= 15
        for s in statements:
            assert sink.query("SELECT formatQuery(%(q)s)", {"q": s}), s
    finally:
        sink.close()


def test_its_views_write_the_sinks_rows_without_phi(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        for s in _as_null_tables(_statements("practiceflow")):
            sink.client.command(s)
        pos = {"_topic": "pf.x", "_partition": 0, "_offset": 7}
        audit = {
            "practice_id": "p",
            "event_id": "e1",
            "at": T,
            "actor": "a",
            "action": "x",
            "entity_type": "m",
            "entity_id": "1",
            "reason": f"matched on {SSN}",
            "outcome": "ok",
            "details": {"rule": "r1"},
            "prev_hash": None,
            "hash": "h",
        }
        sink.insert("kafka_audit_events", [{**audit, **pos}])
        item = {
            "practice_id": "p",
            "item_id": "i1",
            "workflow": "refill",
            "queue": "clinician",
            "priority": "routine",
            "title": "refill",
            "patient_id": "M1",
            "subject_type": None,
            "subject_id": None,
            "evidence": [],
            "created_at": T,
            "source": ("portal", "m1", None, None, None),
            "kind": "refill.routine",
            "state": "done",
            "revision": 2,
            "due_at": None,
            "produced_by": None,
            "decision_id": "d1",
            "outcome": "approve",
            "updated_at": T + 1000,
        }
        sink.insert("kafka_handoff", [{**item, **pos}])
        decision = {
            "practice_id": "p",
            "decision_id": "d1",
            "item_id": "i1",
            "item_revision": 1,
            "option": "edit",
            "actor": "u1",
            "actor_role": None,
            "edits": {"sig": "SECRET"},
            "channel": "cli",
            "decided_at": T,
        }
        sink.insert("kafka_decisions", [{**decision, **pos}])
        assert sink.query("SELECT reason, kafka_offset FROM {db}.audit_events") == [("matched on ***-**-6789", 7)]
        got = sink.query("SELECT item_id, revision, state, source_message_id, at FROM {db}.work_item_events")
        assert [g[:4] for g in got] == [("i1", 2, "done", "m1")]
        sink_row = rows_for("HandoffItem", {**item, "source": {"feed": "portal", "message_id": "m1"}}, T)[1][1]
        assert got[0][4].replace(tzinfo=None) == sink_row["at"].replace(tzinfo=None)  # same as the sink's row
        assert sink.query("SELECT edited_fields FROM {db}.decisions") == [(["sig"],)]
        assert sink.query("SELECT state, revision FROM {db}.handoff_items FINAL") == [("done", 2)]
    finally:
        sink.close()
