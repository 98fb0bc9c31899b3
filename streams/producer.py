"""The gateways' producer: a write is acknowledged only once Kafka has it durably.

``enable.idempotence`` + ``acks=all`` means a retried send is not duplicated by the
broker. When a send fails with an outcome we cannot know (timed out in flight, a
fatal idempotence error, the transport dropped), the producer is closed and a new
one created: librdkafka's idempotent state is not trusted after such errors, and
the sender is told "not accepted" so it retries; downstream de-duplication on
stable message ids absorbs the case where the first write did land.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from practiceflow.streams.catalog import partition_for

log = logging.getLogger(__name__)

# errors after which the write may or may not have happened
UNKNOWN_OUTCOME = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._FATAL,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.UNKNOWN_PRODUCER_ID,
}

# the broker (or librdkafka, before sending) refuses the record for its size: resending the
# same bytes can never succeed, so this is a permanent refusal, never "retry later"
TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}


class DeliveryFailed(RuntimeError):
    def __init__(self, error: KafkaError) -> None:
        super().__init__(str(error))
        self.error = error
        self.unknown_outcome = error.code() in UNKNOWN_OUTCOME or error.fatal()
        #: permanent: the record is larger than the broker or the topic accepts
        self.too_large = error.code() in TOO_LARGE


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


class DurableProducer:
    """Thread-safe; ``send`` blocks, ``send_async`` awaits, both until acks=all."""

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        *,
        client_id: str = "practiceflow-gateway",
        delivery_timeout_ms: int = 30000,
        extra: dict | None = None,
    ) -> None:
        self.conf = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "lz4",
            "delivery.timeout.ms": delivery_timeout_ms,
            "message.max.bytes": 16 * 1024 * 1024,
            **(extra or {}),
        }
        self.partitions = partitions
        self._lock = threading.Lock()
        self._producer = Producer(self.conf)
        self.recreated = 0
        self._poller_stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="producer-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._poller_stop.is_set():
            with self._lock:
                producer = self._producer
            if producer is None:
                return
            producer.poll(0.05)

    def _recreate(self) -> None:
        with self._lock:
            old = self._producer
            self._producer = Producer(self.conf)
            self.recreated += 1
        log.warning("producer re-created after an error with unknown outcome")
        try:
            old.flush(1)
        except Exception as exc:  # the old producer is being dropped; its outcome is already unknown
            log.debug("flushing the replaced producer failed: %s", type(exc).__name__)

    def _produce(self, topic: str, key: str, value: bytes, practice_id: str, on_done) -> None:
        partition = partition_for(practice_id, self.partitions)
        with self._lock:
            producer = self._producer
        try:
            producer.produce(topic, value=value, key=key.encode(), partition=partition, on_delivery=on_done)
        except BufferError:
            producer.poll(0.5)
            producer.produce(topic, value=value, key=key.encode(), partition=partition, on_delivery=on_done)
        except KafkaException as exc:
            on_done(exc.args[0], None)

    def _finish(self, err: KafkaError | None, msg: Message | None) -> Delivered:
        if err is not None:
            failure = DeliveryFailed(err)
            if failure.unknown_outcome:
                self._recreate()
            raise failure
        if msg is None:  # librdkafka reports an error or a message, never neither
            raise DeliveryFailed(KafkaError(KafkaError._UNKNOWN_PARTITION))
        return Delivered(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

    def send(self, topic: str, key: str, value: bytes, practice_id: str, timeout: float = 35.0) -> Delivered:
        done = threading.Event()
        box: list = []

        def on_done(err, msg):
            box.append((err, msg))
            done.set()

        self._produce(topic, key, value, practice_id, on_done)
        if not done.wait(timeout):
            self._recreate()
            raise DeliveryFailed(KafkaError(KafkaError._MSG_TIMED_OUT))
        return self._finish(*box[0])

    async def send_async(self, topic: str, key: str, value: bytes, practice_id: str) -> Delivered:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def on_done(err, msg):
            def settle() -> None:
                if not fut.done():
                    fut.set_result((err, msg))

            loop.call_soon_threadsafe(settle)

        self._produce(topic, key, value, practice_id, on_done)
        err, msg = await fut
        return self._finish(err, msg)

    def close(self, timeout: float = 10.0) -> None:
        self._poller_stop.set()
        self._poller.join(timeout=2)
        with self._lock:
            self._producer.flush(timeout)
            # drop the last reference: librdkafka's threads (and reconnect attempts) end with it
            self._producer = None  # type: ignore[assignment]  # closed: nothing produces after close()
