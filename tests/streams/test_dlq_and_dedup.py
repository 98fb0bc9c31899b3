"""Worker de-duplication end to end: dead letters redriven after a fix, reused HL7 control ids.

Real broker, real MLLP gateway, the Faust worker in-process.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from practiceflow import cli
from practiceflow.jobs.run_file import raw_record
from practiceflow.processors import dispatch
from practiceflow.processors.base import Rejected
from practiceflow.sampleday.senders import MllpClient, ack_code
from practiceflow.streams import dlq, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker


def _cli_env(monkeypatch, cfg, stack) -> None:
    monkeypatch.setenv("PRACTICEFLOW_KAFKA_BOOTSTRAP", stack.bootstrap)
    monkeypatch.setenv("PRACTICEFLOW_SCHEMA_REGISTRY_URL", stack.registry_url)
    monkeypatch.setenv("PRACTICEFLOW_TOPIC_PREFIX", cfg.topic_prefix)
    monkeypatch.setenv("PRACTICEFLOW_TOPIC_PARTITIONS", str(cfg.topic_partitions))
    monkeypatch.setenv("PRACTICEFLOW_STATE_DIR", str(cfg.state_dir))


def test_dead_letter_redriven_after_a_fix_is_normalized_and_audited(cfg, stack, monkeypatch, capsys):
    real = dispatch.NORMALIZERS["hl7v2"]

    def broken(raw, policy=None):  # the "bug": its reason text quotes PHI, as real exception texts do
        raise Rejected("upstream_bug", "could not read PID-5 'Testpatient^Alex'")

    monkeypatch.setitem(dispatch.NORMALIZERS, "hl7v2", broken)
    _cli_env(monkeypatch, cfg, stack)
    raw = raw_record("clinic-q", "hl7v2", oru_r01(control_id="DLQ1"))
    outputs: dict[str, str] = {}

    def cli_out(*argv: str) -> str:
        capsys.readouterr()
        assert cli.main(list(argv)) == 0
        return capsys.readouterr().out

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        loop = asyncio.get_running_loop()
        try:
            topic = f"{cfg.topic_prefix}.raw.hl7v2"
            await producer.send_async(
                topic,
                f"clinic-q/{raw['message_id']}",
                pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
                "clinic-q",
            )
            assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.dead_lettered", 0) >= 1, 60)
            # a plain resend of the same id is (still) a duplicate
            again = dict(raw, received_at=raw["received_at"] + 1)
            await producer.send_async(
                topic,
                f"clinic-q/{raw['message_id']}",
                pipeline.serde.encode(f"{topic}-value", "RawMessage", again),
                "clinic-q",
            )
            assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.duplicate", 0) >= 1, 60)

            monkeypatch.setitem(dispatch.NORMALIZERS, "hl7v2", real)  # the fix
            letters = await loop.run_in_executor(
                None, lambda: dlq.read_letters(stack.bootstrap, pipeline.serde, cfg.topic_prefix, practice="clinic-q")
            )
            assert len(letters) == 1
            lid = letters[0].id
            outputs["list"] = await loop.run_in_executor(None, cli_out, "dlq", "list", "--practice", "clinic-q")
            outputs["show"] = await loop.run_in_executor(None, cli_out, "dlq", "show", lid)
            outputs["payload"] = await loop.run_in_executor(None, cli_out, "dlq", "show", lid, "--show-payload")
            outputs["redrive"] = await loop.run_in_executor(
                None, cli_out, "dlq", "redrive", "--practice", "clinic-q", "--feed", "hl7v2", "--reason", "upstream_bug"
            )
            assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.normalized", 0) >= 1, 60), pipeline.counts
        finally:
            producer.close()
            await runner.stop(pipeline)
        return pipeline, lid

    pipeline, lid = asyncio.run(go())
    assert pipeline.counts["hl7v2.dead_lettered"] == 1 and pipeline.counts["hl7v2.normalized"] == 1
    assert pipeline.counts["hl7v2.duplicate"] == 1  # only the plain resend

    assert "upstream_bug" in outputs["list"] and lid in outputs["list"]
    shown = json.loads(outputs["show"])
    assert shown["reason_code"] == "upstream_bug" and shown["message_id"] == raw["message_id"]
    assert shown["payload_bytes"] == len(raw["payload"]) and len(shown["payload_sha256"]) == 64
    for phi in ("Testpatient", "MRN1001"):
        assert phi not in outputs["show"] and phi not in outputs["list"]
        assert phi in outputs["payload"]  # only when asked for
    assert lid in outputs["redrive"]

    # the redrive went through the same path: same message id, marked, and audited
    raws = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.raw.hl7v2", pipeline.serde, 3)]
    assert [r["message_id"] for r in raws] == [raw["message_id"]] * 3
    assert raws[-1]["headers"]["pf-redrive"] == lid and raws[-1]["payload"] == raw["payload"]
    assert raws[-1]["received_at"] > raw["received_at"]
    audit = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.audit.in", pipeline.serde, 4)]
    actions = [a["action"] for a in audit]
    assert "redriven" in actions and actions.count("normalized") == 1 and "dead_lettered" in actions
    redriven = next(a for a in audit if a["action"] == "redriven")
    assert redriven["entity_id"] == raw["message_id"] and redriven["details"]["dead_letter"] == lid


def test_reused_hl7_control_id_with_new_content_is_processed_and_flagged(cfg, stack):
    """An interface engine restarted and reused control id REUSE1 for a different result."""
    first = oru_r01(control_id="REUSE1", glucose="182")
    reused = oru_r01(control_id="REUSE1", glucose="95", flag="N", mrn="MRN2002")

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        core = GatewayCore(producer, pipeline.serde, cfg.topic_prefix, name="reuse")
        gw = MllpGateway(core, "clinic-u", port=0)
        await gw.start()
        try:
            async with MllpClient("127.0.0.1", gw.port) as client:
                acks = [ack_code(await client.send(m)) for m in (first, reused, first)]  # the last: a plain resend
            done = await runner.wait_for(lambda: pipeline.handled("hl7v2") >= 3, 60)
            assert done, pipeline.counts
        finally:
            await gw.stop()
            producer.close()
            await runner.stop(pipeline)
        return pipeline, acks

    pipeline, acks = asyncio.run(go())
    assert acks == ["AA", "AA", "AA"]
    assert pipeline.counts["hl7v2.normalized"] == 2  # the new result is not dropped as a duplicate
    assert pipeline.counts["hl7v2.duplicate"] == 1  # the identical resend still is
    assert pipeline.counts["hl7v2.control_id_reused"] == 1
    audit = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.audit.in", pipeline.serde, 8)]
    assert [a["reason"] for a in audit if a["action"] == "flagged"] == ["control_id_reused"]
    patients = {
        v["patient_id"]
        for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.observation", pipeline.serde, 6)
    }
    assert patients == {"MRN1001", "MRN2002"}
