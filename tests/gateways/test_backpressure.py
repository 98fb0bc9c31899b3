"""Back-pressure: the gateway core stops taking work before memory grows without bound."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from practiceflow.streams.gateways.base import GatewayCore, Unavailable
from practiceflow.streams.producer import Delivered, DeliveryFailed
from practiceflow.streams.serde import AvroSerde


class SlowProducer:
    """Stands in for Kafka being slow to confirm; counts what is pending."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.pending = 0
        self.max_pending = 0
        self.fail = False

    async def send_async(self, topic, key, value, practice_id):
        self.pending += 1
        self.max_pending = max(self.max_pending, self.pending)
        await self.release.wait()
        self.pending -= 1
        if self.fail and topic.endswith(".raw.hl7v2"):
            raise DeliveryFailed(KafkaError(KafkaError._MSG_TIMED_OUT))
        return Delivered(topic, 0, 0)


def _core(producer, **kw) -> GatewayCore:
    serde = AvroSerde(SchemaRegistryClient.new_client({"url": "mock://"}))
    return GatewayCore(producer, serde, "bp", name="bp", **kw)


def test_in_flight_writes_are_bounded_by_count_and_bytes():
    async def go():
        producer = SlowProducer()
        core = _core(producer, max_in_flight=2, max_in_flight_bytes=10_000)
        tasks = [asyncio.create_task(core.accept("hl7v2", "c", b"x" * 100, f"m{i}")) for i in range(5)]
        await asyncio.sleep(0.1)
        assert core.saturated() and producer.pending == 2
        producer.release.set()
        outcomes = await asyncio.gather(*tasks)
        big = _core(SlowProducer(), max_in_flight=10, max_in_flight_bytes=150)
        t1 = asyncio.create_task(big.accept("hl7v2", "c", b"y" * 100, "a"))
        t2 = asyncio.create_task(big.accept("hl7v2", "c", b"y" * 100, "b"))
        await asyncio.sleep(0.1)
        assert big.producer.pending == 1 and big.saturated() is True  # second waits on bytes, not slots
        big.producer.release.set()
        await asyncio.gather(t1, t2)
        return producer, outcomes

    producer, outcomes = asyncio.run(go())
    assert all(o.accepted for o in outcomes)
    assert producer.max_pending <= 3  # at most 2 raw writes (+ their audit events after release)


def test_unconfirmed_write_is_unavailable_not_accepted():
    async def go():
        producer = SlowProducer()
        producer.fail = True
        producer.release.set()
        core = _core(producer)
        try:
            await core.accept("hl7v2", "c", b"MSH|...", "m1")
        except Unavailable:
            return core.stats
        raise AssertionError("accepted without a durable write")

    stats = asyncio.run(go())
    assert stats == {"hl7v2.unavailable": 1}
