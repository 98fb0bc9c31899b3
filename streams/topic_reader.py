"""Read Kafka partitions to their end with a plain consumer: the one loop every reader shares.

The CLI jobs (``dlq``, ``audit verify``, ``pilot report``, the work-item reader, the EHR
write-back) and the eligibility executor's crash lookup all need the same thing: what a topic
holds *now*, read with ``assign()`` and never committed, so any number of readers can run beside
the worker. Each used to write the loop itself (watermarks, assign, poll, partition EOF, a
deadline), each a little differently. Here it is written once:

* :func:`reader_consumer` - a consumer that only assigns (a fresh group id, no commits, partition
  EOF events on);
* :func:`spans_to_end` - the partitions to read, each from its low to its high watermark as they
  are when asked (one practice's partition, given partitions, or all);
* :func:`read_spans` - every record of those spans, under one deadline; ``TimeoutError`` when the
  end is not reached in time, after yielding what was read (a caller never mistakes a partial
  read for the whole topic);
* :func:`read_to_end` - the three together for one topic.

Records written after the watermarks were asked are not part of the read: a reader sees the
topic as it was when it started, and stops there even while the worker keeps writing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from practiceflow.streams import catalog
from practiceflow.streams.positions import position, watermarks

__all__ = ["Span", "reader_consumer", "spans_to_end", "read_spans", "read_to_end"]


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets ``start`` .. ``end - 1`` of one partition: what one read must deliver."""

    topic: str
    partition: int
    start: int
    end: int


def reader_consumer(bootstrap: str, purpose: str) -> Consumer:
    """A consumer for :func:`read_spans`: ``assign()`` only, never commits, so it joins no group
    (the id is fresh each time: nothing is stored under it) and says when a partition ends."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"practiceflow-{purpose}-{uuid.uuid4().hex[:8]}",  # assign() only, never commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )


def spans_to_end(
    consumer: Consumer,
    topic: str,
    timeout: float,
    *,
    practice_id: str | None = None,
    partitions: Iterable[int] | None = None,
) -> list[Span]:
    """The non-empty partitions of ``topic``, each from its low to its high watermark now.

    ``practice_id``: only that practice's partition (``catalog.partition_for``: a practice's
    records share one). ``partitions``: exactly these (the topic's metadata is not asked).
    Neither: every partition. A topic that does not exist has no spans."""
    if partitions is None:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return []
        if practice_id is not None:
            partitions = [catalog.partition_for(practice_id, len(meta.partitions))]
        else:
            partitions = meta.partitions
    spans = []
    for p in sorted(partitions):
        lo, hi = watermarks(consumer, TopicPartition(topic, p), timeout)  # asked again while a leader moves
        if hi > lo:
            spans.append(Span(topic, p, lo, hi))
    return spans


def read_spans(consumer: Consumer, spans: Sequence[Span], timeout: float) -> Iterator[Message]:
    """Every record of ``spans`` (offset order within a partition), all assigned at once.

    A span is done at its ``end`` offset or at a partition-EOF event (the end can hold no record,
    e.g. a transaction marker). Error events other than EOF are skipped (librdkafka retries them).
    Raises ``TimeoutError`` when a span is not done ``timeout`` seconds after the start."""
    ends = {(s.topic, s.partition): s.end for s in spans if s.end > s.start}
    if not ends:
        return
    consumer.assign([TopicPartition(s.topic, s.partition, s.start) for s in spans if s.end > s.start])
    deadline = time.monotonic() + timeout
    while ends:
        if time.monotonic() > deadline:
            topics = ", ".join(sorted({t for t, _ in ends}))
            raise TimeoutError(f"could not read {topics} to its end in {timeout}s")
        m = consumer.poll(0.5)
        if m is None:
            continue
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                topic, partition, _ = position(m)
                ends.pop((topic, partition), None)
            continue
        topic, partition, offset = position(m)
        end = ends.get((topic, partition))
        if end is None or offset >= end:  # written after the read began: not part of it
            continue
        yield m
        if offset + 1 >= end:
            del ends[(topic, partition)]


def read_to_end(
    bootstrap: str, topic: str, purpose: str, timeout: float, *, practice_id: str | None = None
) -> Iterator[Message]:
    """Every record of ``topic`` (of one practice's partition, when given) as it is now, read
    with its own :func:`reader_consumer` (closed when the iteration ends)."""
    consumer = reader_consumer(bootstrap, purpose)
    try:
        yield from read_spans(consumer, spans_to_end(consumer, topic, timeout, practice_id=practice_id), timeout)
    finally:
        consumer.close()
