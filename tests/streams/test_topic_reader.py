"""streams/topic_reader.py against the real broker: the one read-to-the-end loop the readers share
(work items, dead letters, audit verify, pilot report, the eligibility crash lookup)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.streams import catalog
from practiceflow.streams.positions import position
from practiceflow.streams.topic_reader import Span, read_spans, read_to_end, reader_consumer, spans_to_end

PARTITIONS = 3


def _topic(bootstrap: str) -> str:
    name = f"reader-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        fut.result(30)
    return name


def _send(bootstrap: str, topic: str, rows: list[tuple[int, str]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, value in rows:
        p.produce(topic, value=value.encode(), partition=partition)
    assert p.flush(30) == 0


def _values(messages) -> list[tuple[int, str]]:
    return [(position(m)[1], (m.value() or b"").decode()) for m in messages]


def test_reads_every_partition_to_the_end_in_offset_order(stack):
    topic = _topic(stack.bootstrap)
    rows = [(p, f"{p}-{i}") for i in range(40) for p in range(PARTITIONS)]
    _send(stack.bootstrap, topic, rows)
    got = _values(read_to_end(stack.bootstrap, topic, "test", 30))
    assert sorted(got) == sorted(rows)
    for p in range(PARTITIONS):  # in offset order within each partition
        assert [v for q, v in got if q == p] == [f"{p}-{i}" for i in range(40)]


def test_one_practice_reads_only_its_partition(stack):
    topic = _topic(stack.bootstrap)
    mine = catalog.partition_for("demo-clinic", PARTITIONS)
    _send(stack.bootstrap, topic, [(p, f"{p}-{i}") for i in range(5) for p in range(PARTITIONS)])
    got = _values(read_to_end(stack.bootstrap, topic, "test", 30, practice_id="demo-clinic"))
    assert got == [(mine, f"{mine}-{i}") for i in range(5)]


def test_records_written_after_the_watermarks_are_not_part_of_the_read(stack):
    topic = _topic(stack.bootstrap)
    _send(stack.bootstrap, topic, [(0, "before-1"), (0, "before-2")])
    consumer = reader_consumer(stack.bootstrap, "test")
    try:
        spans = spans_to_end(consumer, topic, 30)
        assert spans == [Span(topic, 0, 0, 2)]  # empty partitions are not read at all
        _send(stack.bootstrap, topic, [(0, "after")])
        assert _values(read_spans(consumer, spans, 30)) == [(0, "before-1"), (0, "before-2")]
    finally:
        consumer.close()


def test_a_span_of_one_offset_reads_that_record_only(stack):
    topic = _topic(stack.bootstrap)
    _send(stack.bootstrap, topic, [(1, f"r{i}") for i in range(4)])
    consumer = reader_consumer(stack.bootstrap, "test")
    try:
        assert _values(read_spans(consumer, [Span(topic, 1, 2, 3)], 30)) == [(1, "r2")]
        assert _values(read_spans(consumer, [Span(topic, 1, 9, 10)], 30)) == []  # past the end: EOF, nothing
    finally:
        consumer.close()


def test_a_missing_topic_has_nothing_to_read(stack):
    assert list(read_to_end(stack.bootstrap, f"missing-{uuid.uuid4().hex[:8]}", "test", 10)) == []


def test_an_end_that_cannot_be_reached_raises_instead_of_returning_a_partial_read(stack):
    topic = _topic(stack.bootstrap)
    _send(stack.bootstrap, topic, [(0, "a")])
    consumer = reader_consumer(stack.bootstrap, "test")
    got: list = []
    try:
        with pytest.raises(TimeoutError, match=topic):
            # partition 0 is read; partition 7 does not exist, so its span never ends
            for m in read_spans(consumer, [Span(topic, 0, 0, 1), Span(topic, 7, 0, 1)], 2):
                got.append(m)
    finally:
        consumer.close()
    assert _values(got) == [(0, "a")]  # what was read is yielded before the error


def test_the_audit_tail_reads_after_its_checkpoint_to_the_end(stack):
    """The audit chain's catch-up after a restart (streams/audit_chain.AuditTail)."""
    from practiceflow.streams.audit_chain import AuditTail

    topic = _topic(stack.bootstrap)
    _send(stack.bootstrap, topic, [(1, f'{{"n": {i}}}') for i in range(30)])
    tail = AuditTail(stack.bootstrap, topic, json.loads)
    try:
        assert [(o, v["n"]) for o, v in tail._read(1, 19)] == [(o, o) for o in range(20, 30)]
        assert len(tail._read(1, None)) == 30 and tail._read(1, 29) == [] and tail._read(0, None) == []
    finally:
        tail.close()


def test_the_audit_tail_raises_when_the_broker_does_not_deliver_in_time(stack, monkeypatch):
    """It used to stop after 5 s without a record and return what it had: the chain's head would then
    be an event that is not the last, and every new event would fork the chain from there. A broker
    that answers the watermarks but delivers nothing (a loaded one) now fails the read."""
    from practiceflow.streams import audit_chain

    class Silent:  # the real consumer, except that no fetch ever returns a record
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def poll(self, timeout):
            time.sleep(timeout)

    topic = _topic(stack.bootstrap)
    _send(stack.bootstrap, topic, [(2, f'{{"n": {i}}}') for i in range(5)])
    real = audit_chain.reader_consumer
    monkeypatch.setattr(audit_chain, "reader_consumer", lambda bootstrap, purpose: Silent(real(bootstrap, purpose)))
    monkeypatch.setattr(audit_chain, "READ_TIMEOUT", 3.0)
    tail = audit_chain.AuditTail(stack.bootstrap, topic, lambda b: b)
    try:
        with pytest.raises(TimeoutError):
            tail._read(2, None)
    finally:
        tail.close()
