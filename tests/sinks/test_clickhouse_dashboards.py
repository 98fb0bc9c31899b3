"""The dashboards' views (0004_dashboards.sql) return rows after a small day, count each id
once, and survive the migration re-running (real chdb)."""

from __future__ import annotations

from practiceflow.sinks import clickhouse_migrations as migrations
from practiceflow.sinks.clickhouse import ClickHouseSink

DAY = 1_780_000_000_000  # 2026-05-28 (UTC)
VIEWS = (
    "SELECT feed, stage, uniqExactMerge(messages) FROM {db}.feed_throughput_minute GROUP BY feed, stage",
    "SELECT workflow, state, uniqExactMerge(items) FROM {db}.work_items_daily GROUP BY workflow, state",
    "SELECT option, uniqExactMerge(decisions) FROM {db}.decisions_daily GROUP BY option",
    "SELECT workflow, decisions, agreed, agreement FROM {db}.pilot_agreement_daily",
    "SELECT workflow, items, p50_seconds FROM {db}.time_to_handoff_daily",
    "SELECT workflow, items, p50_seconds FROM {db}.time_to_decision_daily",
    "SELECT workflow, items, minutes_saved FROM {db}.minutes_saved_daily",
    "SELECT payer_id, category, denied, recovered FROM {db}.denial_dollars_monthly",
)


def small_day(practice: str = "clinic-a", n: int = 12) -> list[tuple]:
    """n ORUs and refill requests: flow events, work items opened then decided, decisions, denial money."""
    batch: list[tuple] = []
    off: dict[str, int] = {}

    def add(topic: str, rt: str, value: dict) -> None:
        off[topic] = off.get(topic, -1) + 1
        batch.append((rt, value, (topic, 0, off[topic])))

    for i in range(n):
        t = DAY + i * 60_000
        workflow = "refill" if i % 2 else "results_review"
        for stage, dt in (("normalized", 0), ("normalized", 5)):  # the second: a worker replay of the same event
            add(
                "pf.analytics.flow",
                "FlowEvent",
                {
                    "practice_id": practice,
                    "message_id": f"m{i}",
                    "feed": "hl7v2",
                    "stage": stage,
                    "records": 3,
                    "at": t + dt,
                },
            )
        item = {
            "practice_id": practice,
            "item_id": f"{workflow}:{i}",
            "workflow": workflow,
            "queue": "clinician",
            "priority": "routine",
            "title": "t",
            "created_at": t + 2_000,
            "kind": f"{workflow}.routine",
            "source": {"feed": "hl7v2", "message_id": f"m{i}"},
        }
        add("pf.handoff", "HandoffItem", {**item, "revision": 1})
        option = "approve" if i % 3 else "edit"
        add(
            "pf.decisions",
            "StaffDecision",
            {
                "practice_id": practice,
                "decision_id": f"d{i}",
                "item_id": item["item_id"],
                "option": option,
                "actor": "u1",
                "channel": "cli",
                "decided_at": t + 600_000,
            },
        )
        add(
            "pf.handoff",
            "HandoffItem",
            {**item, "revision": 2, "state": "done", "outcome": option, "updated_at": t + 600_000},
        )
    for i in range(3):
        add(
            "pf.denials.ledger",
            "DenialLedgerEntry",
            {
                "practice_id": practice,
                "entry_id": f"e{i}",
                "claim_id": f"c{i}",
                "adjudication_id": f"a{i}",
                "payer_id": "P1",
                "category": "coding",
                "denied": 100.0,
                "recoverable": 80.0,
                "recovered": 0.0,
                "state": "open",
                "updated_at": DAY,
            },
        )
    add(
        "pf.denials.ledger",
        "DenialLedgerEntry",
        {  # e0 recovered later: the latest version counts
            "practice_id": practice,
            "entry_id": "e0",
            "claim_id": "c0",
            "adjudication_id": "a0",
            "payer_id": "P1",
            "category": "coding",
            "denied": 100.0,
            "recoverable": 80.0,
            "recovered": 80.0,
            "state": "resolved",
            "updated_at": DAY + 86_400_000,
        },
    )
    return batch


def test_every_dashboard_view_returns_rows_after_a_small_day_and_counts_each_id_once(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    try:
        sink.write_batch(small_day(), DAY)
        for sql in VIEWS:
            assert sink.query(sql), sql
        assert sink.query(VIEWS[0]) == [("hl7v2", "normalized", 12)]  # the replayed flow events count once
        assert {(w, s): n for w, s, n in sink.query(VIEWS[1])} == {
            ("refill", "open"): 6,
            ("refill", "done"): 6,
            ("results_review", "open"): 6,
            ("results_review", "done"): 6,
        }
        agreement = {w: (d, a) for w, d, a, _ in sink.query(VIEWS[3])}
        assert agreement == {"refill": (6, 4), "results_review": (6, 4)}
        assert sorted(sink.query(VIEWS[6])) == [("refill", 6, 24.0), ("results_review", 6, 12.0)]
        assert sink.query(VIEWS[7]) == [("P1", "coding", 300.0, 80.0)]
        handoff = {w: p50 for w, _, p50 in sink.query(VIEWS[4])}
        # 2 s after the flow event; flow_events keeps the replayed event (5 ms later) of the two: 1.995 s
        assert handoff == {"refill": 1.995, "results_review": 1.995}
        # 0004 applied again (a crash before it was recorded): the back-fill does not double anything
        dash = next(m for m in migrations.discover() if m.name == "dashboards")
        dash.apply(migrations.MigrationContext(sink.client, sink.database))
        assert sink.query(VIEWS[0]) == [("hl7v2", "normalized", 12)]
        (records,) = sink.query("SELECT sum(records) FROM {db}.feed_throughput_minute")[0]
        assert 36 <= records <= 72  # 12 x 3 records; a raw sum: a replayed event adds until a merge collapses it
    finally:
        sink.close()


def test_views_over_rows_written_before_the_dashboards_migration_are_back_filled(tmp_path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    sink = ClickHouseSink(dsn)
    try:
        for t in ("feed_throughput_minute", "work_items_daily", "decisions_daily"):
            sink.client.command(f"DROP TABLE practiceflow.{t}_mv")
            sink.client.command(f"DROP TABLE practiceflow.{t}")
        sink.client.command("ALTER TABLE practiceflow.schema_migrations DELETE WHERE version >= 4")
        sink.write_batch(small_day(), DAY)  # rows from before the views existed
    finally:
        sink.close()
    again = ClickHouseSink(dsn)
    try:
        assert again.query(VIEWS[0]) == [("hl7v2", "normalized", 12)]
        assert again.query(VIEWS[2])
    finally:
        again.close()
