"""The ClickHouse sink: its own Kafka consumer that commits only what ClickHouse confirmed.

Why not a Faust agent any more: the agent's offsets were committed by Faust on its own
schedule, independently of whether the batch had reached ClickHouse, so a crash (or a
ClickHouse error) left rows in Kafka that no restart would write again (issue 8 measured
66 messages' rows missing with the sink's committed lag at 0). And every message the
worker produced was fetched again through aiokafka, the worker's most expensive path.

Here the sink is a plain confluent-kafka consumer in its own consumer group, with
``enable.auto.commit`` off:

1. poll a batch (at most ``batch_size`` messages, at most ``batch_seconds`` of waiting);
2. decode it (``streams/serde.py``) and write it with ``ClickHouseSink.write_batch``;
3. only then commit the batch's offsets, synchronously.

A failed write is retried with exponential backoff (capped at ``backoff_max`` seconds)
for as long as ClickHouse is down; meanwhile the consumer's partitions are paused and
it keeps polling, so it stays in its group and nothing past the failed batch is read or
committed. A crash anywhere re-reads at most the uncommitted batch; every row carries
its Kafka position and the input it was made from (``pf-source``/``pf-seq`` headers), and
``write_batch`` skips what a table already holds, so neither this replay nor a worker's (the
same outputs sent again at new offsets) adds a row twice (raw counts, not only ``FINAL``). Records that cannot be decoded at all
(not our wire format) are logged, counted and skipped: they stay in Kafka, and stopping
the sink for them would stop analytics for every practice.

The worker runs one in a thread by default (``practiceflow worker``, the main job, the
tests); ``practiceflow sink`` runs it alone (production: scale it separately, or keep
analytics off the worker's CPU).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge

from practiceflow.schemas.headers import Origin, origin_of
from practiceflow.sinks.clickhouse import ClickHouseSink, Position
from practiceflow.streams import catalog
from practiceflow.streams.clock import now_ms
from practiceflow.streams.positions import position, watermarks
from practiceflow.streams.serde import AvroSerde, SerdeError

log = logging.getLogger("practiceflow.sink")

ROWS = Counter("practiceflow_sink_rows_total", "Rows confirmed in ClickHouse (written or already there)", ["table"])
FAILURES = Counter("practiceflow_sink_write_failures_total", "ClickHouse batch writes that failed (then retried)")
LAST_COMMIT = Gauge("practiceflow_sink_last_commit_timestamp_seconds", "When the sink last committed a written batch")
RESTARTS = Counter(
    "practiceflow_sink_consumer_restarts_total", "Kafka consumers the sink replaced after a fatal error (e.g. fenced)"
)
FAILING = Gauge("practiceflow_sink_failing", "1 while the sink is retrying a batch ClickHouse did not take")

SINK_KINDS = (catalog.Kind.NORMALIZED, catalog.Kind.HANDOFF, catalog.Kind.DEAD_LETTER, catalog.Kind.ANALYTICS)
# and these topics of other kinds: the chained audit (not audit.in), staff decisions, drafts,
# command results (not the commands: their payloads are requests, the results say what came of them)
SINK_SUFFIXES = ("audit", "decisions", "drafts", "cmd.results")


def sink_topics(prefix: str) -> dict[str, str]:
    """Topic name -> record type for every topic that lands in ClickHouse."""
    return {
        spec.name(prefix): spec.record_type
        for spec in catalog.CATALOG
        if spec.kind in SINK_KINDS or spec.suffix in SINK_SUFFIXES
    }


def backoff_delays(initial: float, maximum: float, factor: float = 2.0):
    """initial, initial*factor, ... capped at maximum, for ever."""
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * factor, maximum)


class ClickHouseSinkConsumer:
    """Kafka -> ClickHouse with at-least-once reads and exactly-once rows (see module doc)."""

    def __init__(
        self,
        bootstrap: str,
        serde: AvroSerde,
        prefix: str,
        sink: ClickHouseSink,
        *,
        group_id: str,
        batch_size: int = 500,
        batch_seconds: float = 0.5,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        on_written: Callable[[dict[str, int]], None] | None = None,
        consumer_config: dict[str, Any] | None = None,
        write: Callable[[list[tuple[str, dict[str, Any], Position, Origin | None]], int], dict[str, int]] | None = None,
    ) -> None:
        self.serde = serde
        self.sink = sink
        self.topics = sink_topics(prefix)
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.counts: dict[str, int] = {}  # this consumer's own (its thread writes it)
        self.on_written = on_written  # rows per table after each confirmed batch (e.g. to the worker's loop)
        self.write = write or sink.write_batch
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "client.id": "practiceflow-clickhouse-sink",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **(consumer_config or {}),
        }
        self.group_id = group_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._revoked = False
        self.assigned = threading.Event()  # set once the group gave this consumer partitions
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Run in a daemon thread (the worker's default); ``stop`` ends it cleanly."""
        self._thread = threading.Thread(target=self._run_logged, name="clickhouse-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_logged(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            log.exception("the ClickHouse sink stopped")

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Consume until ``stop`` is called (blocking).

        A consumer that hit a fatal error is replaced by a new one. librdkafka makes a few
        errors fatal, after which the consumer only ever returns that error: with static
        membership, a session that timed out while the group coordinator moved (a broker
        restart) ends in FENCED_INSTANCE_ID (librdkafka issue 3437). Logging it and polling
        on left the sink alive, in its group, and writing nothing for good. The new consumer
        resumes from the committed offsets; rows already written are skipped, as after a crash.
        """
        delays = backoff_delays(1.0, self.backoff_max)  # two sinks fencing each other must not spin
        while not self._stop.is_set():
            consumer = Consumer(self.conf)
            consumer.subscribe(list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke)
            try:
                fatal = self._consume(consumer)
            finally:
                _close_quietly(consumer)  # leaves the group; nothing is committed here
            if fatal is None:
                return
            self._count("clickhouse.consumer_restarts")
            RESTARTS.inc()
            delay = next(delays)
            log.error("the sink's Kafka consumer hit a fatal error (%s); a new one in %.0fs", fatal, delay)
            self._stop.wait(delay)

    def _consume(self, consumer: Consumer) -> str | None:
        """Batches until ``stop`` (None) or a fatal error (its text: the consumer is unusable)."""
        try:
            while not self._stop.is_set():
                messages = consumer.consume(self.batch_size, timeout=self.batch_seconds)
                batch = self._usable(consumer, messages)
                if batch:
                    self._revoked = False
                    self._handle(consumer, batch)
        except _FatalConsumerError as exc:
            return str(exc)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and (err.fatal() or err.code() == KafkaError._FATAL):
                return str(err)
            raise
        return None

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.sink.forget_marks()  # another instance may have written these partitions
        if partitions:
            self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked = True

    def _usable(self, consumer: Consumer, messages: list[Message]) -> list[Message]:
        out = []
        for m in messages:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.fatal() or err.code() == KafkaError._FATAL:  # the event carries the code, not the flag
                raise _FatalConsumerError(str(err))
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("sink consumer: %s", err)
        return out

    def _decode(self, batch: list[Message]) -> list[tuple[str, dict[str, Any], Position, Origin | None]]:
        items = []
        for m in batch:
            topic, partition, offset = position(m)
            record_type = self.topics[topic]
            try:
                value = self.serde.decode(m.value() or b"", record_type)  # a tombstone is not our wire format
            except SerdeError as exc:
                # not our wire format: it can never be written; it stays in Kafka (no PHI in the log)
                log.error("skipping an undecodable record at %s/%d@%d: %s", topic, partition, offset, exc)
                self._count("clickhouse.undecodable")
                continue
            # the input this record was made from, if its producer says (a replay's copy says the same)
            items.append((record_type, value, (topic, partition, offset), origin_of(m.headers())))
        return items

    def _handle(self, consumer: Consumer, batch: list[Message]) -> None:
        delays = backoff_delays(self.backoff_initial, self.backoff_max)
        while True:
            try:
                items = self._decode(batch)  # registry lookups can fail transiently too
                written = self.write(items, now_ms())
                break
            except Exception as exc:
                delay = next(delays)
                self._count("clickhouse.write_failures")
                FAILURES.inc()
                FAILING.set(1)
                log.warning(
                    "ClickHouse write of %d record(s) failed (%s); retrying in %.1fs",
                    len(batch),
                    type(exc).__name__,
                    delay,
                )
                if not self._wait_paused(consumer, batch, delay):
                    return  # stopping, or the partitions went to another member: not committed
        FAILING.set(0)
        for table, n in written.items():
            self._count(f"clickhouse.{table}", n)
            ROWS.labels(table).inc(n)
        if self.on_written is not None:
            self.on_written(dict(written))
        self._commit(consumer, batch)

    def _wait_paused(self, consumer: Consumer, batch: list[Message], delay: float) -> bool:
        """Sleep ``delay`` while staying in the group; False when the batch must be dropped."""
        assignment = consumer.assignment()
        consumer.pause(assignment)
        deadline = time.monotonic() + delay
        try:
            while not self._stop.is_set() and not self._revoked:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                m = consumer.poll(min(left, 0.5))  # serves rebalance callbacks, keeps membership
                if m is not None and m.error() is None:  # fetched before the pause: read it again later
                    consumer.seek(TopicPartition(*position(m)))
            return False
        finally:
            if not self._revoked:
                consumer.resume(consumer.assignment())

    def _commit(self, consumer: Consumer, batch: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            topic, partition, offset = position(m)
            last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # the rows are written; the partitions moved on (rebalance): the next owner re-reads
            # this batch and write_batch skips what is already there
            log.warning("sink offset commit failed (%s); the batch will be re-read and skipped", exc)
            self._count("clickhouse.commit_failures")
            return
        self._count("clickhouse.batches")
        LAST_COMMIT.set_to_current_time()


class _FatalConsumerError(Exception):
    """librdkafka reported a fatal error: this consumer instance can never fetch again."""


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except KafkaException as exc:  # a fenced consumer may refuse to leave cleanly; it is dropped either way
        log.warning("closing the sink's consumer: %s", exc)


def committed_lag(bootstrap: str, group_id: str, topics: list[str], timeout: float = 10.0) -> int:
    """Messages in ``topics`` past the group's committed offsets: 0 = everything is in ClickHouse.

    Reads committed offsets without joining the group (no rebalance for the running sink);
    for health checks, the main job's drain, and the tests.
    """
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False})
    try:
        tps = []
        for topic in topics:
            meta = probe.list_topics(topic, timeout=timeout).topics.get(topic)
            if meta is not None and meta.error is None:
                tps += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        lag = 0
        for tp in _committed(probe, tps, timeout):
            lo, hi = watermarks(probe, tp, timeout)
            lag += max(hi - (tp.offset if tp.offset >= 0 else lo), 0)
        return lag
    finally:
        probe.close()


def _committed(probe: Consumer, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
    """``Consumer.committed``, retried while the group coordinator moves or loads (transient)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe.committed(tps, timeout=timeout)
        except KafkaException as exc:
            retriable = exc.args[0].retriable() or exc.args[0].code() in (
                KafkaError.NOT_COORDINATOR,
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                KafkaError.COORDINATOR_NOT_AVAILABLE,
            )
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
