"""cmd.llm through the real broker: the executor answers every command once, audits every call,
never re-calls the model for a replayed command, and falls back when the model server is down."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from confluent_kafka import Producer

from practiceflow.processors.llm.config import LLMSettings
from practiceflow.sinks.llm.service import LLMService
from practiceflow.streams.commands.llm import LLMCommandExecutor
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import closed_port
from tests.llm_fixtures import llm_server, llm_settings, server_state, set_mode
from tests.streams.test_pipeline import consume_all

__all__ = ["llm_server"]

pytestmark = pytest.mark.broker

PHI_NAME = "Philippa Quarrington"
PAGE = f"REFILL REQUEST\nPatient Name: {PHI_NAME}\nDOB: 07/04/1955\nMedication: Lisinopril\nStrength: 20 mg\nPharmacy: Main St Pharmacy\n"


def command(practice: str, cid: str, task: str = "fax_extract", *, payload: str | None = None, **kw) -> dict:
    request = {"task": task, "pages": [{"page": 1, "text": PAGE}]}
    return {
        "practice_id": practice,
        "command_id": cid,
        "kind": "llm",
        "workflow": "fax",
        "item_id": f"fax/{cid}",
        "patient_id": None,
        "payload_type": "llm.request",
        "payload": payload if payload is not None else json.dumps(request),
        "params": {},
        "issued_at": int(time.time() * 1000),
        "deadline_at": None,
        "source": None,
        **kw,
    }


async def send(stack, cfg, serde, cmds: list[dict]) -> None:
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions, client_id="test-cmd")
    topic = f"{cfg.topic_prefix}.cmd.llm"
    try:
        for c in cmds:
            data = serde.encode(f"{topic}-value", "WorkflowCommand", c)
            await producer.send_async(topic, f"{c['practice_id']}/{c['command_id']}", data, c["practice_id"])
    finally:
        producer.close()


async def drive(executor: LLMCommandExecutor, until, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until(executor.totals):
        assert time.monotonic() < deadline, f"executor did not finish: {executor.totals}"
        await executor.run_once(batch_size=16, poll_seconds=0.5)


def results_by_id(stack, cfg, serde, expect: int, timeout: float = 30.0) -> dict[str, dict]:
    got = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.cmd.results", serde, expect, timeout=timeout)
    return {v["command_id"]: v for _, v in got}


def test_llm_commands_end_to_end(stack, cfg, llm_server, caplog):
    caplog.set_level(logging.DEBUG)
    set_mode(llm_server, "normal")
    cfg = cfg.model_copy(update={"llm": llm_settings(llm_server)})
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    cmds = [
        command("clinic-a", "c1"),
        command("clinic-a", "c2", task="fax_classify"),
        command("clinic-b", "c1"),  # same id, another practice: its own command
        command("clinic-a", "late", deadline_at=1),
        command("clinic-a", "bad", payload='{"task": "fax_extract", "pages": []}'),
    ]

    async def first_run():
        await send(stack, cfg, serde, cmds)
        service = LLMService.from_settings(cfg.llm)
        ex = LLMCommandExecutor(cfg, stack.bootstrap, serde, service)
        try:
            await drive(ex, lambda t: t.handled >= 5)
        finally:
            ex.close()
            await service.aclose()
        return ex.totals

    totals = asyncio.run(first_run())
    assert totals.outcomes == {"ok": 3, "timeout": 1, "failed": 1} and totals.replayed == 0
    calls = server_state(llm_server)["counts"]["chat"]
    assert calls == 3  # the late and the malformed command never reached the model

    results = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.cmd.results", serde, 5)
    by_key = {(v["practice_id"], v["command_id"]): v for _, v in results}
    assert len(by_key) == 5
    extract = json.loads(by_key[("clinic-a", "c1")]["payload"])
    assert extract["source"] == "model" and not extract["needs_person"]
    got = {f["name"]: f for f in extract["fields"]}
    assert got["drug"]["text"] == "Lisinopril" and got["patient_name"]["text"] == PHI_NAME
    assert PAGE[got["strength"]["span_start"] : got["strength"]["span_end"]] == "20 mg"
    classify = json.loads(by_key[("clinic-a", "c2")]["payload"])
    assert classify["label"] == "refill_request" and classify["evidence"][0]["text"] == "REFILL"
    assert by_key[("clinic-a", "late")]["outcome"] == "timeout"
    assert by_key[("clinic-a", "bad")]["reason"] == "llm_bad_request"
    assert json.loads(by_key[("clinic-a", "bad")]["payload"])["needs_person"]
    assert by_key[("clinic-b", "c1")]["practice_id"] == "clinic-b"  # results stay with their tenant

    audit = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.audit.in", serde, 5)]
    calls_audited = [a for a in audit if a["action"] == "llm_call"]
    assert len(calls_audited) == 5
    a1 = next(a for a in calls_audited if a["entity_id"] == "c1" and a["practice_id"] == "clinic-a")
    d = a1["details"]
    assert d["model"] == "practiceflow/rule-model-1" and d["prompt"].startswith("fax_extract/v1@")
    assert len(d["input_sha256"]) == 64 and float(d["latency_ms"]) > 0 and a1["outcome"] == "ok"
    text = json.dumps(audit) + caplog.text
    assert PHI_NAME not in text and "Lisinopril" not in text  # no prompt or completion text in audit or logs

    # -- replay: the same command sent again, and a new consumer group re-reading cmd.llm from the start
    async def replay():
        await send(stack, cfg, serde, [command("clinic-a", "c1")])
        service = LLMService.from_settings(cfg.llm)
        ex = LLMCommandExecutor(cfg, stack.bootstrap, serde, service, group_id=f"{cfg.consumer_group}-replay")
        try:
            await drive(ex, lambda t: t.replayed >= 6)
        finally:
            ex.close()
            await service.aclose()
        return ex.totals

    again = asyncio.run(replay())
    assert again.handled == 0 and again.replayed == 6
    assert server_state(llm_server)["counts"]["chat"] == calls  # the model was not called again
    assert len(consume_all(stack.bootstrap, f"{cfg.topic_prefix}.cmd.results", serde, 6, timeout=4)) == 5


def test_model_server_down_or_refused_still_answers_every_command(stack, cfg, llm_server):
    port = closed_port()
    down = LLMSettings(
        base_url=f"http://127.0.0.1:{port}/v1",
        allowed_endpoints=[f"http://127.0.0.1:{port}"],
        model="m",
        backoff_s=0.01,
        backoff_max_s=0.02,
        breaker_fail_max=50,  # both commands run at once; keep the breaker closed so the reason is the cause
    )
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))

    async def go(llm: LLMSettings, cmds: list[dict], group: str):
        c = cfg.model_copy(update={"llm": llm})
        await send(stack, c, serde, cmds)
        service = LLMService.from_settings(llm)
        ex = LLMCommandExecutor(c, stack.bootstrap, serde, service, group_id=group)
        try:
            await drive(ex, lambda t: t.handled >= len(cmds))
        finally:
            ex.close()
            await service.aclose()

    asyncio.run(go(down, [command("clinic-a", "d1"), command("clinic-a", "d2", task="fax_classify")], "g-down"))
    set_mode(llm_server, "redirect")
    asyncio.run(go(llm_settings(llm_server), [command("clinic-a", "r1")], "g-redirect"))

    res = results_by_id(stack, cfg, serde, 3)
    d1 = json.loads(res["d1"]["payload"])
    assert res["d1"]["outcome"] == "ok" and res["d1"]["reason"] == "llm_unreachable"
    assert d1["source"] == "fallback" and d1["needs_person"]
    assert {f["name"]: f["text"] for f in d1["fields"]}["patient_name"] == PHI_NAME  # the fax is not lost
    d2 = json.loads(res["d2"]["payload"])  # classification has no fallback: a person sorts the page
    assert res["d2"]["outcome"] == "failed" and d2["source"] == "none" and d2["needs_person"]
    r1 = json.loads(res["r1"]["payload"])
    assert res["r1"]["outcome"] == "refused" and res["r1"]["reason"] == "llm_public_endpoint"
    assert r1["source"] == "fallback" and r1["fields"]


def test_unreadable_command_is_answered_or_dead_lettered(stack, cfg, llm_server):
    """Bytes that are no WorkflowCommand: the key names the command -> a ``failed`` result the
    workflow can act on; the key is unusable too -> the original bytes on dlq.cmd. Never silence."""
    cfg = cfg.model_copy(update={"llm": llm_settings(llm_server)})
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    topic = f"{cfg.topic_prefix}.cmd.llm"
    raw = Producer({"bootstrap.servers": stack.bootstrap, "acks": "all"})
    raw.produce(topic, key=b"clinic-a/garbled", value=b"not avro at all")
    raw.produce(topic, key=b"\xff\xfe", value=b"\x00no key either")
    assert raw.flush(30) == 0

    async def go():
        await send(stack, cfg, serde, [command("clinic-a", "late", deadline_at=1)])  # the batch goes on past them
        service = LLMService.from_settings(cfg.llm)
        ex = LLMCommandExecutor(cfg, stack.bootstrap, serde, service)
        try:
            await drive(ex, lambda t: t.unreadable >= 2 and t.handled >= 2)
        finally:
            ex.close()
            await service.aclose()
        return ex.totals

    totals = asyncio.run(go())
    assert totals.outcomes == {"failed": 1, "timeout": 1}
    res = results_by_id(stack, cfg, serde, 2)
    garbled = res["garbled"]
    assert garbled["practice_id"] == "clinic-a" and garbled["outcome"] == "failed"
    assert garbled["reason"] == "unreadable_command" and json.loads(garbled["payload"])["needs_person"]
    assert res["late"]["outcome"] == "timeout"
    dead = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.cmd", serde, 1)
    assert len(dead) == 1
    dl = dead[0][1]
    assert dl["payload"] == b"\x00no key either" and dl["reason_code"] == "unreadable_command"
    assert dl["source_topic"] == topic and dl["details"]["key_hex"] == "fffe"
