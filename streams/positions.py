"""Where a consumed Kafka record sits, typed.

confluent-kafka types ``Message.topic()``, ``partition()`` and ``offset()`` as optional
because an error event may lack them; a fetched record (and a partition-EOF event)
always has all three. One accessor says so once instead of at every call site.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

# A partition's leader can be moving (a broker restarted, a preferred-leader election, a topic
# just created): the broker answers these for a moment, and asking again a little later is the
# documented remedy (retriable errors), not a reason to fail a check or a health probe.
LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)


def position(m: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a fetched record or a partition-EOF event."""
    topic, partition, offset = m.topic(), m.partition(), m.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a Kafka event without a topic, partition or offset is not a record")
    return topic, partition, offset


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float = 10.0) -> tuple[int, int]:
    """(low, high) watermark of ``tp``, asked again while its leader moves (up to 4x ``timeout``)."""
    deadline = time.monotonic() + 4 * timeout
    probe = TopicPartition(tp.topic, tp.partition)
    while True:
        try:
            low, high = consumer.get_watermark_offsets(probe, timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in LEADER_MOVING or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def high_watermarks(
    admin: AdminClient, tps: Iterable[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """High watermark of every ``(topic, partition)`` in ``tps``, asked in ONE ListOffsets call.

    ``get_watermark_offsets`` is one broker round trip per partition; a caller that needs many
    (the patient-context barrier: every feed and context topic of a partition) paid them one
    after another. ``AdminClient.list_offsets`` sends one request per partition leader for all
    of them. Partitions whose leader is moving (:data:`LEADER_MOVING`) are asked again, alone,
    like :func:`watermarks` does (up to 4x ``timeout``); any other error is raised. Read
    committed, like a consumer's default ``isolation.level`` (what ``get_watermark_offsets``
    answered)."""
    deadline = time.monotonic() + 4 * timeout
    left = list(dict.fromkeys(tps))
    got: dict[tuple[str, int], int] = {}
    while left:
        futures = admin.list_offsets(
            {TopicPartition(topic, partition): OffsetSpec.latest() for topic, partition in left},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=timeout,
        )
        moving: list[tuple[str, int]] = []
        for tp, future in futures.items():
            try:
                got[(tp.topic, tp.partition)] = int(future.result().offset)
            except KafkaException as exc:
                if exc.args[0].code() not in LEADER_MOVING or time.monotonic() > deadline:
                    raise
                moving.append((tp.topic, tp.partition))
        left = moving
        if left:
            time.sleep(0.5)
    return got


# The input record an output was made from (``topic:partition:offset``), as a Kafka header on
# every output of the normalizer (records, handoff items, dead letters, flow and audit events,
# retries, commands: ``Outbox.made_from``). Two readers: the patient-context barrier, on normalized
# records (a workflow event needs its own feed's raw partition processed only up to the raw record
# it came from, not up to that partition's high watermark, which keeps moving while requests
# arrive: streams/workflows/context.py), and the ClickHouse sink, with :data:`SEQ_HEADER`.
SOURCE_HEADER = "pf-source"


def source_header(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The :data:`SOURCE_HEADER` for a record made from ``topic``/``partition``/``offset``."""
    return [(SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode())]


def source_of(headers: object) -> tuple[str, int, int] | None:
    """The (topic, partition, offset) in a record's :data:`SOURCE_HEADER`, from Faust's
    ``Message.headers`` (a list of pairs or a mapping); None when absent or malformed (a
    record written before the header existed, or by another producer)."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:  # type: ignore[attr-defined]
        if name != SOURCE_HEADER or not isinstance(value, bytes | bytearray):
            continue
        topic, _, rest = bytes(value).decode("utf-8", "replace").rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if topic and partition.isdigit() and rest.isdigit():
            return topic, int(partition), int(rest)
        return None
    return None


# Which of its input's outputs a record is (0, 1, 2, ... in the order the handler sent them),
# next to :data:`SOURCE_HEADER`. Together they name one output of one input, whichever Kafka
# offset it landed at: a batch handled again after a crash (its outputs confirmed, its de-dup
# marks not) sends the same outputs again at new offsets, and the ClickHouse sink recognises
# them by this name (sinks/clickhouse.py) instead of writing their rows twice.
SEQ_HEADER = "pf-seq"

Origin = tuple[str, int, int, int]  # (input topic, partition, offset, output seq)


_SEQ = [(SEQ_HEADER, str(n).encode()) for n in range(256)]  # the common ones, built once


def seq_header(seq: int) -> tuple[str, bytes]:
    """The :data:`SEQ_HEADER` of output ``seq`` of an input."""
    return _SEQ[seq] if seq < len(_SEQ) else (SEQ_HEADER, str(seq).encode())


def origin_headers(topic: str, partition: int, offset: int, seq: int) -> list[tuple[str, bytes]]:
    """:data:`SOURCE_HEADER` and :data:`SEQ_HEADER` for output ``seq`` of that input."""
    return [*source_header(topic, partition, offset), seq_header(seq)]


def origin_of(headers: object) -> Origin | None:
    """(topic, partition, offset, seq) from a record's headers (confluent-kafka's list of pairs
    or Faust's); None unless both headers are there and well formed (records from before the
    headers, or from producers that do not write them, are named by their own position)."""
    source = source_of(headers)
    if source is None:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for name, value in pairs:  # type: ignore[attr-defined]
        if name == SEQ_HEADER and isinstance(value, bytes | bytearray) and bytes(value).isdigit():
            return (*source, int(bytes(value)))
    return None
