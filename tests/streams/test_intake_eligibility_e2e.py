"""Intake -> eligibility end to end through the real broker, the Faust worker and the simulator process.

A portal intake form goes in as a raw message; the worker normalizes it, the intake agent
emits an eligibility command with a 270, the executor sends it to the clearinghouse
simulator (a real HTTP server process, CORE envelope), its 271 comes back as a
CommandResult and the intake agent turns it into work items and drafts."""

from __future__ import annotations

import asyncio
import json

import pytest

from practiceflow.jobs.run_file import raw_record
from practiceflow.localstack.clearinghouse import SimulatorProcess
from practiceflow.localstack.ports import free_port
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.commands.eligibility import published_results
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker


def intake_raw(submission: str, member: str, payer: str = "Aetna") -> dict:
    body = {
        "submission_id": submission,
        "submitted_at": "2026-12-01T14:00:00Z",
        "patient_id": None,
        "patient": {"family_name": "Rivera", "given_name": "Ana", "birth_date": "1988-02-29", "sex": "F"},
        "insurance": {"payer": payer, "member_id": member, "group_number": "G-77"},
        "reason_for_visit": "knee pain",
        "appointment": {
            "appointment_id": f"appt-{submission}",
            "start": "2026-12-10T09:00:00-06:00",
            "provider": "Dr. Welby",
            "service_type": "30",
        },
    }
    return raw_record(
        "clinic-a",
        "portal",
        json.dumps(body).encode(),
        headers={"event_type": "intake.submitted"},
        message_id=submission,
    )


async def _run(cfg, stack, raws, until, timeout=90):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    try:
        for raw in raws:
            topic = f"{cfg.topic_prefix}.raw.{raw['feed']}"
            await producer.send_async(
                topic,
                f"{raw['practice_id']}/{raw['message_id']}",
                pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
                raw["practice_id"],
            )
        assert await runner.wait_for(lambda: until(pipeline), timeout), pipeline.counts
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline


def test_intake_forms_get_eligibility_results_and_an_inactive_plan_a_front_desk_item(cfg, stack):
    port = free_port()
    cfg = cfg.model_copy(update={"clearinghouse_sim_port": port, "eligibility_deadline_s": 30.0})
    raws = [
        intake_raw("intk-clean", "W100200300"),
        intake_raw("intk-inactive", "INACT-77"),
        intake_raw("intk-unknown", "W1", payer="Nowhere Mutual"),
    ]
    with SimulatorProcess(port, latency_ms=20) as sim:
        p = asyncio.run(
            _run(
                cfg,
                stack,
                raws,
                lambda p: p.counts.get("intake.results", 0) >= 2 and p.counts.get("intake.forms", 0) >= 3,
            )
        )
        stats = sim.stats()
    assert p.counts["intake.commands"] == 2  # the unknown payer never reaches the clearinghouse
    # the app's stop closed the connector's HTTP session (streams/lifecycle.py): no "Unclosed client session"
    assert p.eligibility._client.connector._session is None
    assert len(stats["received"]) == 2 and stats["answered"] == 2

    cmds = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.cmd.eligibility", p.serde, 2)
    assert {c["payload_type"] for _, c in cmds} == {"x12.270"}
    assert all(k.decode().startswith("clinic-a/eligibility:") for k, _ in cmds)
    results = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.cmd.results", p.serde, 2)
    assert {r["outcome"] for _, r in results} == {"ok"}
    assert all(r["payload"].startswith("ISA") for _, r in results)

    items = [i for _, i in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", p.serde, 4)]
    by_kind = {i["kind"]: i for i in items}
    assert set(by_kind) == {
        "intake.eligible",
        "intake.visit_ready",
        "intake.gap.inactive",
        "intake.could_not_determine",
    }
    inactive = by_kind["intake.gap.inactive"]
    assert inactive["queue"] == "front_desk" and inactive["subject_id"] == "intk-inactive"
    assert inactive["produced_by"]["rule_id"] == "intake.gap.inactive"
    assert any(e["record_type"] == "CommandResult" and e["assessment"] == "not_met" for e in inactive["evidence"])
    assert by_kind["intake.visit_ready"]["queue"] == "clinician"
    assert by_kind["intake.visit_ready"]["assigned_to"] == "Dr. Welby"
    assert "unknown_payer" in by_kind["intake.could_not_determine"]["title"]

    drafts = [d for _, d in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.drafts", p.serde, 2)]
    assert sorted(d["kind"] for d in drafts) == ["fhir.Coverage", "fhir.Patient"]
    assert {d["item_id"] for d in drafts} == {by_kind["intake.eligible"]["item_id"]}


def test_outage_ends_could_not_determine_and_a_replay_never_resends(cfg, stack):
    port = free_port()
    cfg = cfg.model_copy(
        update={"clearinghouse_sim_port": port, "eligibility_deadline_s": 3.0, "eligibility_attempt_timeout_s": 1.0}
    )
    raws = [intake_raw("intk-outage", "W900")]
    with SimulatorProcess(port, outage=True) as sim:
        p = asyncio.run(_run(cfg, stack, raws, lambda p: p.counts.get("intake.results", 0) >= 1))
        first = len(sim.stats()["received"])
        assert first >= 2  # retried with backoff inside the deadline
        # the same command again (a replayed workflow log): answered from the executor's table
        cmds = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.cmd.eligibility", p.serde, 1)
        sim.configure(outage=False)
        p2 = asyncio.run(_resend_command(cfg, stack, cmds[0]))
        assert len(sim.stats()["received"]) == first  # nothing sent again
    # the executor's crash-recovery lookup finds the published result on cmd.results
    key = cmds[0][0].decode()
    found = published_results(
        stack.bootstrap,
        f"{cfg.topic_prefix}.cmd.results",
        p.serde.decode,
        set(range(cfg.topic_partitions)),
        {key, "clinic-a/eligibility:nope"},
    )
    assert set(found) == {key} and found[key]["outcome"] == "timeout"
    assert p2.counts.get("eligibility.deduplicated", 0) == 1
    items = [i for _, i in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", p.serde, 1)]
    assert [i["kind"] for i in items] == ["intake.could_not_determine"]
    assert "timeout" in items[0]["title"] and "503" in items[0]["what_happened"]


async def _resend_command(cfg, stack, cmd):
    key, value = cmd
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    try:
        topic = f"{cfg.topic_prefix}.cmd.eligibility"
        await producer.send_async(
            topic, key.decode(), pipeline.serde.encode(f"{topic}-value", "WorkflowCommand", value), value["practice_id"]
        )
        assert await runner.wait_for(lambda: pipeline.counts.get("eligibility.deduplicated", 0) >= 1, 60), (
            pipeline.counts
        )
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline
