"""Back-pressure: the gateway core stops taking work before memory grows without bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from confluent_kafka import KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient

from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams.gateways.base import GatewayCore, Unavailable
from practiceflow.streams.gateways.http import HttpGateway
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
        assert big.saturated() is False  # everything written: open again
        return producer, outcomes

    producer, outcomes = asyncio.run(go())
    assert all(o.accepted for o in outcomes)
    assert producer.max_pending <= 3  # at most 2 raw writes (+ their audit events after release)


def test_http_refuses_bodies_while_a_write_waits_for_the_byte_budget(tmp_path: Path):
    """The HTTP gateway reads a body into memory before the core counts it; so while any write
    is waiting, a new request must get 503 + Retry-After without its body being read."""

    async def go() -> tuple[int, str | None, int]:
        producer = SlowProducer()
        core = _core(producer, max_in_flight=10, max_in_flight_bytes=150)
        store = LocalDocumentStore((tmp_path / "docs").as_uri())
        gw = HttpGateway(core, {"bp"}, store, tokens={"bp": "bp-token"}, portal_secrets={}, port=0)
        await gw.start()
        t1 = asyncio.create_task(core.accept("hl7v2", "bp", b"y" * 100, "a"))
        t2 = asyncio.create_task(core.accept("hl7v2", "bp", b"y" * 100, "b"))  # waits on bytes
        try:
            await asyncio.sleep(0.1)
            # a gateway that read the body would wait behind the blocked writes: the client gives up
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                resp = await http.post(
                    f"http://127.0.0.1:{gw.port}/x12/bp",
                    data=b"ISA*" + b"z" * 10_000,
                    headers={"Authorization": "Bearer bp-token"},
                )
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        finally:
            producer.release.set()
            await asyncio.gather(t1, t2)
            await gw.stop()
        return status, retry_after, producer.max_pending

    status, retry_after, max_pending = asyncio.run(go())
    assert (status, retry_after) == (503, "1")
    assert max_pending == 1  # nothing but the first write ever reached Kafka concurrently


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
