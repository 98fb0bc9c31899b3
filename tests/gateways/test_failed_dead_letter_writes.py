"""A gateway never swallows a dead letter or audit event that Kafka did not confirm.

Before, ``GatewayCore.reject`` logged the failed DLQ write and answered the sender with a
final refusal (AR / 422): the input then existed nowhere. Now the request fails (AE / 503),
so the sender keeps it and retries.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from practiceflow.sampleday.senders import MllpClient, ack_code
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.producer import DeliveryFailed, DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import closed_port, oru_r01
from tests.streams.test_pipeline import consume_all


def _dead_kafka_core() -> tuple[GatewayCore, DurableProducer]:
    producer = DurableProducer(f"127.0.0.1:{closed_port()}", 3, delivery_timeout_ms=1500)
    return GatewayCore(producer, AvroSerde(registry_client("mock://")), "tdead", name="down"), producer


def test_mllp_refusal_whose_dead_letter_fails_is_an_ae_not_an_ar():
    async def go():
        core, producer = _dead_kafka_core()
        gw = MllpGateway(core, "clinic-x", port=0)
        await gw.start()
        try:
            async with MllpClient("127.0.0.1", gw.port) as client:
                no_control_id = await client.send(oru_r01().replace(b"|MSG00001|", b"||"))
        finally:
            await gw.stop()
            producer.close(timeout=1)
        return no_control_id, core.stats

    ack, stats = asyncio.run(go())
    assert ack_code(ack) == "AE"  # resend later: the refusal was not recorded anywhere
    assert stats["hl7v2.dlq_unavailable"] == 1


def test_http_refusal_whose_dead_letter_fails_is_a_503(tmp_path):
    async def go():
        core, producer = _dead_kafka_core()
        gw = HttpGateway(
            core, {"clinic-x"}, LocalDocumentStore((tmp_path / "d").as_uri()), tokens={"clinic-x": "t"}, port=0
        )
        await gw.start()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{gw.port}/fhir/clinic-x",
                    data=b"{not json",
                    headers={"Authorization": "Bearer t", "Content-Type": "application/fhir+json"},
                ) as r,
            ):
                return r.status, r.headers.get("Retry-After")
        finally:
            await gw.stop()
            producer.close(timeout=1)

    status, retry = asyncio.run(go())
    assert status == 503 and retry


class _AuditDown(GatewayCore):
    """The raw write reaches the real broker; the audit write is refused."""

    async def _write(self, suffix, key, value, practice_id):
        if suffix == "audit.in":
            from confluent_kafka import KafkaError

            raise DeliveryFailed(KafkaError(KafkaError._MSG_TIMED_OUT))
        await super()._write(suffix, key, value, practice_id)


@pytest.mark.broker
def test_acceptance_whose_audit_event_fails_is_an_ae(cfg, stack):
    async def go():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        serde = AvroSerde(registry_client(stack.registry_url))
        core = _AuditDown(producer, serde, cfg.topic_prefix, name="audit-down")
        gw = MllpGateway(core, "clinic-y", port=0)
        await gw.start()
        try:
            async with MllpClient("127.0.0.1", gw.port) as client:
                ack = await client.send(oru_r01(control_id="AUD1"))
        finally:
            await gw.stop()
            producer.close()
        return ack, serde, core.stats

    ack, serde, stats = asyncio.run(go())
    assert ack_code(ack) == "AE" and stats["hl7v2.audit_unavailable"] == 1
    # the raw bytes did land: the sender's resend will be recognised as a duplicate downstream
    assert len(consume_all(stack.bootstrap, f"{cfg.topic_prefix}.raw.hl7v2", serde, 1, timeout=10)) == 1
