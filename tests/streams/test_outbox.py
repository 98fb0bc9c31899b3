"""The Outbox on librdkafka (streams/offsets.py + streams/producer.py OutputProducer), real broker.

The worker's commit rule stands on ``Outbox.confirm``: it must return only when the broker
has every send, in order, with the bytes Faust's own path would have written, and it must
raise (so nothing is committed) when one send was not written.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import faust
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.streams.offsets import Outbox
from practiceflow.streams.producer import DeliveryFailed, OutputProducer
from practiceflow.streams.serde import AvroCodec, AvroSerde, registry_client
from practiceflow.streams.topics import create_topics


def _read(bootstrap: str, topic: str, partition: int, n: int) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        out: list = []
        for _ in range(100):
            out += [m for m in c.consume(num_messages=n, timeout=0.5) if m.error() is None]
            if len(out) >= n:
                break
        return out
    finally:
        c.close()


def test_outbox_writes_the_topic_codec_bytes_and_confirms_offsets_in_order(stack, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    create_topics(stack.bootstrap, prefix, 3, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    app = faust.App(f"outbox-{prefix}", broker=f"kafka://{stack.bootstrap}", datadir=str(tmp_path), store="memory://")
    name = f"{prefix}.analytics.flow"
    codec = AvroCodec(serde, f"{name}-value", "FlowEvent")
    topic = app.topic(name, value_serializer=codec, key_serializer="raw", partitions=3)
    table = app.Table("seen-outbox", default=int, partitions=3)
    # the worker's Faust app declares its changelog topics at start; this app is never started
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for fut in admin.create_topics([NewTopic(table.changelog_topic.get_topic_name(), 3, 1)]).values():
        fut.result(30)
    producer = OutputProducer(stack.bootstrap)

    def flow(i: int) -> dict:
        return {
            "practice_id": "p",
            "message_id": f"m{i}",
            "feed": "hl7v2",
            "stage": "normalized",
            "record_type": None,
            "records": i,
            "latency_ms": None,
            "at": 1_700_000_000_000 + i,
        }

    class _Msg:
        partition = 2

    class _Ev:
        message = _Msg()

    watcher = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"w-{prefix}"})
    seen_at_count: list[int] = []  # the partition's high-water mark when the after() callback ran

    def count() -> None:
        seen_at_count.append(watcher.get_watermark_offsets(TopicPartition(name, 1), timeout=10)[1])

    async def go():
        box = Outbox(producer)
        for i in range(50):
            await box.send(topic, f"p/m{i}", flow(i), 1)
        box.after(count)
        assert seen_at_count == []  # not before the confirm
        written = await box.confirm()
        marks = Outbox(producer)
        marks.table_write(table, _Ev(), "p/hl7v2/m1", 123)
        changelog = await marks.confirm()
        assert table.data["p/hl7v2/m1"] == 123
        # a delete (the context agent's merged-away contexts): gone from the store, and a
        # tombstone on the changelog, so a restore from it does not bring the key back
        deletes = Outbox(producer)
        deletes.table_write(table, _Ev(), "p/hl7v2/m1", None)
        changelog += await deletes.confirm()
        return written, changelog

    try:
        written, changelog = asyncio.run(go())
    finally:
        producer.close()
        watcher.close()
    # a counter a reader waits on (Outbox.after) moves only once every send is readable
    assert seen_at_count == [written[-1].offset + 1]
    assert [w.partition for w in written] == [1] * 50
    assert [w.offset for w in written] == list(range(written[0].offset, written[0].offset + 50))
    got = _read(stack.bootstrap, name, 1, 50)
    assert [m.key() for m in got] == [f"p/m{i}".encode() for i in range(50)]
    assert got[7].value() == codec.dumps(flow(7))  # the bytes Faust's topic.send would write
    assert serde.decode(got[7].value(), "FlowEvent")["records"] == 7
    # the table entry went through the store and its changelog records to the changelog partition
    assert "p/hl7v2/m1" not in table.data
    cl = table.changelog_topic.get_topic_name()
    rec, tomb = _read(stack.bootstrap, cl, 2, 2)
    assert [(c.topic, c.partition) for c in changelog] == [(cl, 2), (cl, 2)]
    assert json.loads(rec.key()) == "p/hl7v2/m1" and json.loads(rec.value()) == 123
    assert json.loads(tomb.key()) == "p/hl7v2/m1" and tomb.value() is None  # a tombstone, not b"null"


def test_outbox_confirm_raises_when_a_send_was_not_written(stack, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    create_topics(stack.bootstrap, prefix, 3, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    app = faust.App(f"outbox-{prefix}", broker=f"kafka://{stack.bootstrap}", datadir=str(tmp_path), store="memory://")
    name = f"{prefix}.analytics.flow"
    topic = app.topic(name, value_serializer=AvroCodec(serde, f"{name}-value", "FlowEvent"), key_serializer="raw")
    producer = OutputProducer(stack.bootstrap, extra={"message.timeout.ms": 5000})
    value = {
        "practice_id": "p",
        "message_id": "m",
        "feed": "hl7v2",
        "stage": "normalized",
        "record_type": None,
        "records": 1,
        "latency_ms": None,
        "at": 1,
    }

    counted: list[str] = []

    async def go():
        box = Outbox(producer)
        await box.send(topic, "p/ok", value, 0)
        await box.send(topic, "p/lost", value, 7)  # the topic has 3 partitions: never written
        box.after(counted.append, "lost")
        with pytest.raises(DeliveryFailed):
            await box.confirm()
        assert counted == []  # a failed confirm counts nothing: the batch is retried and counts then
        await box.send(topic, "p/ok2", value, 0)  # the same box confirmed again: only its own callbacks
        box.after(counted.append, "ok2")
        await box.confirm()

    try:
        asyncio.run(go())
    finally:
        producer.close()
    assert counted == ["ok2"]


def test_table_writes_on_librdkafka_record_each_changelog_partition_s_offset_in_rocksdb(stack, tmp_path):
    """What Faust's own send_changelog callback does, on the librdkafka path the worker's agents
    use for every table (``Outbox.table_write``): once a confirm has the changelog records, the
    RocksDB store remembers, per changelog partition, the offset it holds up to, so a restarted
    worker reads only the changelog written after it. Partitions the ticket did not write keep
    what they had; a later confirm moves the offset on."""
    from faust.types import TP

    prefix = f"t{uuid.uuid4().hex[:6]}"
    app = faust.App(f"outbox-{prefix}", broker=f"kafka://{stack.bootstrap}", datadir=str(tmp_path), store="rocksdb://")
    table = app.Table("seen-rocks", default=int, partitions=3, options={"driver": "rocksdict"})
    cl = table.changelog_topic.get_topic_name()
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for fut in admin.create_topics([NewTopic(cl, 3, 1)]).values():
        fut.result(30)
    producer = OutputProducer(stack.bootstrap)

    def event(partition: int):
        msg = type("Msg", (), {"partition": partition})()
        return type("Ev", (), {"message": msg})()

    async def write(keys: list[tuple[int, str]]) -> list:
        box = Outbox(producer)
        for partition, key in keys:
            box.table_write(table, event(partition), key, 1)
        return await box.confirm()

    try:
        first = asyncio.run(write([(2, "a"), (0, "b"), (2, "c"), (2, "d")]))
        at_first = {p: table.data.persisted_offset(TP(cl, p)) for p in range(3)}
        second = asyncio.run(write([(2, "e")]))
        at_second = {p: table.data.persisted_offset(TP(cl, p)) for p in range(3)}
    finally:
        producer.close()
        table.data.reset_state()
    on_2 = [d.offset for d in first if d.partition == 2]
    assert at_first == {0: next(d.offset for d in first if d.partition == 0), 1: None, 2: max(on_2)}
    assert at_second == {**at_first, 2: second[0].offset} and second[0].offset > max(on_2)
