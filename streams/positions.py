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
