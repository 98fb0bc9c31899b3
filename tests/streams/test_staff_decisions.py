"""Staff decisions through the real broker: the CLI decides, the worker applies it once, refusals are audited."""

from __future__ import annotations

import asyncio
import json

import pytest

from practiceflow import cli
from practiceflow.processors.workflows.workitem import by_rule, evidence, new_item, option
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from practiceflow.streams.workitem_reader import read_work_items
from tests.streams.test_dlq_and_dedup import _cli_env

pytestmark = pytest.mark.broker
PRACTICE = "clinic-d"


def _item():
    return new_item(
        practice_id=PRACTICE,
        workflow="refill",
        subject=["req-77"],
        kind="refill.routine",
        queue="clinician",
        title="Refill: atorvastatin 20 mg",
        what_happened="Refill requested in the portal.",
        produced_by=by_rule("refill.statin", "2026-12-01", "clinic protocol"),
        source={"feed": "portal", "message_id": "req-77"},
        now=1_000,
        evidence=[evidence("LDL", record_type="Observation", value="96", unit="mg/dL", assessment="present")],
        options=[option("approve", "Sign renewal"), option("reject", "Decline")],
    )


def test_cli_decision_is_applied_once_and_a_late_one_is_refused(cfg, stack, monkeypatch, capsys):
    _cli_env(monkeypatch, cfg, stack)
    item = _item()

    def cli_run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli.main(list(argv))
        out = capsys.readouterr()
        return rc, out.out, out.err

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        serde = pipeline.serde
        handoff = catalog.BY_SUFFIX["handoff"].name(cfg.topic_prefix)
        decisions = catalog.BY_SUFFIX["decisions"].name(cfg.topic_prefix)
        key = f"{PRACTICE}/{item['item_id']}"
        try:
            await producer.send_async(handoff, key, serde.encode(f"{handoff}-value", "HandoffItem", item), PRACTICE)
            rc, out, _ = cli_run("queue", "--practice", PRACTICE, "list")
            assert rc == 0 and item["item_id"] in out and "1 item(s)" in out
            rc, out, _ = cli_run("queue", "--practice", PRACTICE, "show", item["item_id"])
            assert rc == 0 and "LDL: 96 mg/dL (present) [Observation]" in out and "refill.statin@2026-12-01" in out
            # an option the item does not offer is refused before anything is written
            rc, _, err = cli_run("queue", "--practice", PRACTICE, "--actor", "dr.b", "decide", item["item_id"], "pick")
            assert rc == 2 and "not offered" in err
            rc, _, err = cli_run(
                "queue", "--practice", PRACTICE, "--actor", "fd.c", "--role", "front_desk", "approve", item["item_id"]
            )
            assert rc == 2 and "only a clinician" in err
            rc, out, _ = cli_run(
                "queue", "--practice", PRACTICE, "--actor", "dr.b", "--role", "clinician", "approve", item["item_id"]
            )
            assert rc == 0
            decision_id = json.loads(out)["decision_id"]
            assert await runner.wait_for(lambda: pipeline.counts.get("decisions.applied", 0) >= 1, 90)

            items = read_work_items(stack.bootstrap, serde, cfg.topic_prefix, PRACTICE)
            done = items[item["item_id"]]
            assert (done["state"], done["revision"], done["outcome"], done["decision_id"]) == (
                "done",
                2,
                "approve",
                decision_id,
            )
            # the same decision again (a staff tool retrying) changes nothing
            same = {
                "practice_id": PRACTICE,
                "decision_id": decision_id,
                "item_id": item["item_id"],
                "option": "approve",
                "actor": "dr.b",
                "actor_role": "clinician",
                "channel": "cli",
                "decided_at": 5,
            }
            await producer.send_async(
                decisions, key, serde.encode(f"{decisions}-value", "StaffDecision", same), PRACTICE
            )
            # a second person rejecting the closed item is refused and audited
            late = dict(same, decision_id="api:late-1", option="reject", actor="dr.c")
            await producer.send_async(
                decisions, key, serde.encode(f"{decisions}-value", "StaffDecision", late), PRACTICE
            )
            assert await runner.wait_for(lambda: pipeline.counts.get("decisions.refused", 0) >= 1, 90)
            assert pipeline.counts.get("decisions.applied", 0) == 1
            items = read_work_items(stack.bootstrap, serde, cfg.topic_prefix, PRACTICE)
            assert items[item["item_id"]]["revision"] == 2
        finally:
            producer.close()
            await runner.stop(pipeline)

    asyncio.run(go())
