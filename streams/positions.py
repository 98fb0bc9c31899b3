"""Where a consumed Kafka record sits, typed.

confluent-kafka types ``Message.topic()``, ``partition()`` and ``offset()`` as optional
because an error event may lack them; a fetched record (and a partition-EOF event)
always has all three. One accessor says so once instead of at every call site.
"""

from __future__ import annotations

from confluent_kafka import Message


def position(m: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a fetched record or a partition-EOF event."""
    topic, partition, offset = m.topic(), m.partition(), m.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a Kafka event without a topic, partition or offset is not a record")
    return topic, partition, offset
