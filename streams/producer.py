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
import functools
import logging
import threading
from collections.abc import Sequence
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


class _Ticket:
    """The deliveries of one group of sends (a batch's outputs, or its table writes).

    ``produce`` runs on the event loop; librdkafka's delivery reports run in the poll
    thread. The loop is woken once per ticket, when the last report arrived after
    :meth:`wait` sealed it, not once per message (``call_soon_threadsafe`` per message
    would cost more than the send itself).
    """

    __slots__ = ("done", "error", "future", "lock", "loop", "results", "sealed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.results: list[Delivered | None] = []
        self.done = 0
        self.sealed = False
        self.error: KafkaError | None = None
        self.future: asyncio.Future[None] | None = None

    def delivered(self, idx: int, err: KafkaError | None, msg: Message | None) -> None:  # poll thread
        if err is not None:
            if self.error is None:
                self.error = err
        elif msg is not None:
            self.results[idx] = Delivered(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
        with self.lock:
            self.done += 1
            finished = self.sealed and self.done == len(self.results) and self.future is not None
        if finished:
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(None)

    async def wait(self) -> list[Delivered]:
        with self.lock:
            self.sealed = True
            if self.done < len(self.results):
                self.future = self.loop.create_future()
        if self.future is not None:
            await self.future
        if self.error is not None:
            raise DeliveryFailed(self.error)
        return self.results  # type: ignore[return-value]  # every slot is filled once error is None


class OutputProducer:
    """The worker's producer for batch outputs: librdkafka, idempotent, ``acks=all``.

    Why not Faust's producer (aiokafka): issue 8's profile put most of the worker's CPU in
    aiokafka's produce path — each input fans out into a dozen records plus audit, flow and
    table-changelog writes, each a Python-level send of a few dozen microseconds.
    librdkafka batches and frames in C; what remains in Python is one ``produce`` call and
    one delivery report per message.

    Sends are grouped in tickets (:meth:`ticket`); ``await ticket.wait()`` returns once the
    broker acknowledged every send of the ticket (or raises :class:`DeliveryFailed`), which
    is what the worker's commit rule needs (``streams/offsets.py``): outputs confirmed ->
    de-dup marks confirmed -> offsets committed. Ordering per partition is kept by the
    idempotent producer, across retries too.
    """

    def __init__(self, bootstrap: str, *, client_id: str = "practiceflow-worker", extra: dict | None = None) -> None:
        self.conf = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1024 * 1024,
            "compression.type": "lz4",
            "message.max.bytes": 16 * 1024 * 1024,
            "queue.buffering.max.messages": 1_000_000,
            **(extra or {}),
        }
        self._producer = Producer(self.conf)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="output-producer-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def ticket(self) -> _Ticket:
        return _Ticket(asyncio.get_running_loop())

    def produce(
        self,
        ticket: _Ticket,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: Sequence[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        idx = len(ticket.results)
        ticket.results.append(None)
        on_done = functools.partial(ticket.delivered, idx)
        while True:
            try:
                if headers:
                    self._producer.produce(topic, value, key, partition, on_delivery=on_done, headers=list(headers))
                else:
                    self._producer.produce(topic, value, key, partition, on_delivery=on_done)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
            except KafkaException as exc:
                on_done(exc.args[0], None)
                return

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poller.join(timeout=2)
        if self._producer is not None:
            self._producer.flush(timeout)
            # drop the last reference: librdkafka's threads (and reconnect attempts) end with it
            self._producer = None  # type: ignore[assignment]  # closed: nothing produces after close()
