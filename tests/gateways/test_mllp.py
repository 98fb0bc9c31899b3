"""MLLP round trips over a real socket against the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from practiceflow.sampleday.senders import MllpClient, ack_code
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker


async def _gateway(cfg, stack):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    serde = AvroSerde(registry_client(stack.registry_url))
    core = GatewayCore(producer, serde, cfg.topic_prefix, name="mllp-test")
    gw = MllpGateway(core, "clinic-m", port=0)
    await gw.start()
    return gw, core, producer, serde


def test_ack_only_after_the_raw_bytes_are_in_kafka(cfg, stack):
    async def go():
        gw, _core, producer, serde = await _gateway(cfg, stack)
        try:
            async with MllpClient("127.0.0.1", gw.port) as client:
                ack = await client.send(oru_r01(control_id="ACK1"))
        finally:
            await gw.stop()
            producer.close()
        return ack, serde

    ack, serde = asyncio.run(go())
    assert ack_code(ack) == "AA"
    assert b"ACK1" in ack  # MSA-2 echoes the control id
    raws = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.raw.hl7v2", serde, 1, timeout=5)
    assert len(raws) == 1 and raws[0][1]["payload"] == oru_r01(control_id="ACK1")


def test_garbage_gets_a_nak_with_a_reason_and_a_dead_letter(cfg, stack):
    async def go():
        gw, _core, producer, serde = await _gateway(cfg, stack)
        try:
            async with MllpClient("127.0.0.1", gw.port) as client:
                nak1 = await client.send(b"hello, this is not hl7")
                nak2 = await client.send(oru_r01().replace(b"|MSG00001|", b"||"))  # no MSH-10
                nak3 = await client.send(b"", raw_frame=b"junk before frame\x0bMSH|^~\\&|x\x1c\x0d")
                ok = await client.send(oru_r01(control_id="AFTER"))  # the connection still works
        finally:
            await gw.stop()
            producer.close()
        return (nak1, nak2, nak3, ok), serde

    (nak1, nak2, nak3, ok), serde = asyncio.run(go())
    assert [ack_code(a) for a in (nak1, nak2, nak3, ok)] == ["AR", "AR", "AR", "AA"]
    assert b"ERR" in nak1 and b"ERR" in nak2
    letters = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.hl7v2", serde, 3, timeout=10)]
    assert len(letters) == 3
    assert letters[0]["payload"] == b"hello, this is not hl7"
    assert {letter["stage"] for letter in letters} == {"gateway"}
    assert letters[1]["reason_code"] == "missing_control_id"
    assert letters[2]["reason_code"] == "mllp_framing"


def test_resend_after_lost_ack_is_not_processed_twice(cfg, stack):
    async def go():
        gw, core, producer, _serde = await _gateway(cfg, stack)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        try:
            msg = oru_r01(control_id=f"RS{uuid.uuid4().hex[:6]}")
            async with MllpClient("127.0.0.1", gw.port) as c1:
                await c1.send(msg)  # the sender "loses" this ACK ...
            async with MllpClient("127.0.0.1", gw.port) as c2:
                ack = await c2.send(msg)  # ... and resends on a new connection
            assert ack_code(ack) == "AA"
            done = await runner.wait_for(
                lambda: pipeline.counts.get("hl7v2.normalized", 0) + pipeline.counts.get("hl7v2.duplicate", 0) >= 2, 60
            )
            assert done, pipeline.counts
        finally:
            await runner.stop(pipeline)
            await gw.stop()
            producer.close()
        return pipeline, core

    pipeline, core = asyncio.run(go())
    assert core.stats["hl7v2.accepted"] == 2 and core.stats["hl7v2.resent"] == 1
    assert pipeline.counts["hl7v2.normalized"] == 1
    assert pipeline.counts["hl7v2.duplicate"] == 1
    assert pipeline.counts["record.Observation"] == 3  # not 6


def test_mllp_over_tls(cfg, stack, tmp_path):
    import ssl
    import subprocess

    from practiceflow.jobs.gateways import tls_context

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = tls_context(cfg.model_copy(update={"mllp_tls_cert": cert, "mllp_tls_key": key}))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False

    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="tls")
        gw = MllpGateway(core, "clinic-t", port=0, ssl_context=server_ctx)
        await gw.start()
        try:
            async with MllpClient("127.0.0.1", gw.port, ssl=client_ctx) as client:
                return await client.send(oru_r01(control_id="TLS1"))
        finally:
            await gw.stop()
            producer.close()

    assert ack_code(asyncio.run(go())) == "AA"
