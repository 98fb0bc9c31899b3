"""Pilot mode through the real broker: a piloted practice's decisions write nothing back, are
compared with the proposals, counted in the worker's table and in ClickHouse, and reported."""

from __future__ import annotations

import asyncio
import json

import pytest

from practiceflow import cli
from practiceflow.processors.workflows.workitem import by_rule, new_item, option
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topic_reader import read_to_end
from practiceflow.streams.topics import create_topics
from tests.streams.test_dlq_and_dedup import _cli_env

pytestmark = pytest.mark.broker
PILOT, LIVE = "clinic-pilot", "clinic-live"


def _item(practice: str, rid: str) -> dict:
    return new_item(
        practice_id=practice,
        workflow="refill",
        subject=[rid],
        kind="refill.routine",
        queue="clinician",
        title="Refill: atorvastatin 20 mg",
        what_happened="Refill requested in the portal.",
        produced_by=by_rule("refill.statin", "2026-12-01", "clinic protocol"),
        source={"feed": "portal", "message_id": rid},
        now=1_000,
        options=[
            option("approve", "Sign renewal", target=f"draft-{rid}"),
            option("edit", "Change, then sign", target=f"draft-{rid}"),
            option("reject", "Decline"),
        ],
        draft_ids=[f"draft-{rid}"],
    )


def _commands(stack, topic: str) -> list[str]:
    """The keys on a command topic (read from the start of every partition)."""
    return [(m.key() or b"").decode() for m in read_to_end(stack.bootstrap, topic, "test-pilot", 30)]


def test_pilot_practice_writes_nothing_and_measures_agreement(cfg, stack, monkeypatch, capsys):
    cfg = cfg.model_copy(update={"pilot": {PILOT: ["refill"]}})
    _cli_env(monkeypatch, cfg, stack)
    monkeypatch.setenv("PRACTICEFLOW_PILOT", json.dumps({PILOT: ["refill"]}))
    items = {
        "a": _item(PILOT, "req-a"),
        "b": _item(PILOT, "req-b"),
        "c": _item(PILOT, "req-c"),
        "live": _item(LIVE, "req-l"),
    }

    def cli_run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = cli.main(list(argv))
        return rc, capsys.readouterr().out

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, sink=sink)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        handoff = catalog.BY_SUFFIX["handoff"].name(cfg.topic_prefix)
        try:
            for it in items.values():
                value = pipeline.serde.encode(f"{handoff}-value", "HandoffItem", it)
                await producer.send_async(handoff, f"{it['practice_id']}/{it['item_id']}", value, it["practice_id"])
            clin = ("--actor", "dr.b", "--role", "clinician")
            assert cli_run("queue", "--practice", PILOT, *clin, "approve", items["a"]["item_id"])[0] == 0
            assert cli_run("queue", "--practice", PILOT, *clin, "reject", items["b"]["item_id"])[0] == 0
            assert (
                cli_run("queue", "--practice", PILOT, *clin, "edit", items["c"]["item_id"], "--edit", "qty=30")[0] == 0
            )
            assert cli_run("queue", "--practice", LIVE, *clin, "approve", items["live"]["item_id"])[0] == 0
            c = pipeline.counts
            assert await runner.wait_for(lambda: c.get("decisions.applied", 0) >= 4, 90)
            assert await runner.wait_for(lambda: c.get("pilot.compared", 0) >= 3, 60)
            assert await runner.wait_for(
                lambda: (
                    c.get("clickhouse.pilot_agreement", 0) >= 3
                    and c.get("clickhouse.audit_events", 0) >= c.get("audit.chained", 0) > 0
                ),
                60,
            )
            # nothing written back for the piloted practice; the live practice's renewal is queued
            keys = _commands(stack, catalog.BY_SUFFIX["cmd.ehr_write"].name(cfg.topic_prefix))
            assert [k.split("/")[0] for k in keys] == [LIVE]
            assert c.get("pilot.withheld.refill.ehr_write") == 2  # approve and edit would have written
            # the worker's running counts: per workflow, kind, rule version
            counts = pipeline.pilot.counts(PILOT)
            assert counts == {
                ("refill", "refill.routine", "refill.statin", "2026-12-01"): {
                    "agree": 1,
                    "disagree": 2,
                    "minutes_saved": 2.5,
                }
            }
            assert pipeline.pilot.counts(LIVE) == {}  # a live practice is not compared
        finally:
            producer.close()
            await runner.stop(pipeline)
            sink.close()

    asyncio.run(go())
    rc, out = cli_run("pilot", "report", "--practice", PILOT)
    assert rc == 0, out
    assert "3 compared work items, from clickhouse" in out
    row = next(line for line in out.splitlines() if "refill.statin@2026-12-01" in line)
    assert row.split()[3:6] == ["1", "2", "0"] and "33%" in row and row.endswith("2.5")
    assert "commands withheld by pilot mode (nothing written back or sent): 2" in out
    rc, out_topic = cli_run("pilot", "report", "--practice", PILOT, "--source", "topic")
    assert rc == 0 and row in out_topic  # the topic and ClickHouse hold the same figures
    # the withheld commands, the decisions and the views are on the audit chain, which verifies
    rc, out = cli_run("audit", "verify", "--practice", PILOT)
    assert rc == 0 and "every chain verifies" in out, out
