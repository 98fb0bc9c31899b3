"""A producer that records what the gateways write, for tests of gateway behaviour itself.

The broker tests (test_tenants.py, test_mllp.py, ...) prove the writes reach Kafka; the
bounds, replay and folder tests here are about what the gateway does before and around a
write, so they record the writes in memory and decode them with the same Avro serde.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.producer import Delivered
from practiceflow.streams.serde import AvroSerde


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    async def send_async(self, topic: str, key: str, value: bytes, practice_id: str) -> Delivered:
        self.sent.append((topic, key, value))
        return Delivered(topic, 0, len(self.sent))

    def close(self) -> None:
        pass


def recording_core(**kw: Any) -> tuple[GatewayCore, RecordingProducer, AvroSerde]:
    producer = RecordingProducer()
    serde = AvroSerde(SchemaRegistryClient.new_client({"url": "mock://"}))
    return GatewayCore(producer, serde, "rec", name="rec", **kw), producer, serde  # type: ignore[arg-type]


def written(producer: RecordingProducer, serde: AvroSerde, suffix: str) -> list[dict[str, Any]]:
    """Decoded values written to ``rec.<suffix>`` (e.g. ``dlq.hl7v2``, ``raw.portal``)."""
    return [serde.decode(v) for t, _, v in producer.sent if t == f"rec.{suffix}"]
