"""Review findings (issue 8): nothing may stall a partition for good.

- an undecodable raw record (not our wire format, a body that does not match its schema, an
  unknown schema id) becomes a dead letter with its bytes and the reason, and the messages
  after it on the same partition are normalized;
- a committed offset below the log start (retention deleted records while no worker ran)
  starts the partition at its low watermark instead of seeking to a gap no fetch can fill.

Real broker and registry, the worker in-process.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from practiceflow.jobs.run_file import raw_record
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker

PRACTICE = "clinic-stuck"


def test_undecodable_raw_records_are_dead_lettered_and_the_partition_keeps_flowing(cfg, stack):
    cfg = cfg.model_copy(update={"practices": [PRACTICE]})
    topic = f"{cfg.topic_prefix}.raw.hl7v2"
    partition = catalog.partition_for(PRACTICE, cfg.topic_partitions)
    bad = [
        b"\x07not avro at all",  # wrong magic byte
        b"\x00\x00",  # shorter than the header
        struct.pack(">bI", 0, 987_654) + b"\x02xx",  # a schema id the registry never gave
    ]

    async def go() -> Pipeline:
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            # the bad records first, then a good one behind them on the same partition
            for i, data in enumerate(bad):
                await producer.send_async(topic, f"{PRACTICE}/bad{i}", data, PRACTICE)
            good = raw_record(PRACTICE, "hl7v2", oru_r01(control_id="AFTERBAD"))
            value = pipeline.serde.encode(f"{topic}-value", "RawMessage", good)
            await producer.send_async(topic, f"{PRACTICE}/{good['message_id']}", value, PRACTICE)
            await runner.start(pipeline)
            try:
                assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.normalized", 0) >= 1, 90), (
                    pipeline.counts
                )
            finally:
                await runner.stop(pipeline)
        finally:
            producer.close()
        return pipeline

    pipeline = asyncio.run(go())
    assert pipeline.counts.get("hl7v2.dead_lettered") == 3, pipeline.counts
    letters = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.hl7v2", pipeline.serde, 3)]
    assert sorted(lt["payload"] for lt in letters) == sorted(bad)
    for lt in letters:
        assert lt["reason_code"] == "undecodable_record" and lt["stage"] == "normalize"
        assert lt["practice_id"] == PRACTICE and lt["source_topic"] == topic and lt["source_partition"] == partition
    reasons = " ".join(lt["reason"] for lt in letters)
    assert "magic byte" in reasons and "5-byte" in reasons and "987654" in reasons


def test_a_committed_offset_below_the_log_start_starts_at_the_low_watermark(cfg, stack):
    topic = f"{cfg.topic_prefix}.raw.hl7v2"
    partition = catalog.partition_for(PRACTICE, cfg.topic_partitions)
    group = cfg.consumer_group

    async def go() -> Pipeline:
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            for i in range(6):
                raw = raw_record(PRACTICE, "hl7v2", oru_r01(control_id=f"RET{i}"))
                value = pipeline.serde.encode(f"{topic}-value", "RawMessage", raw)
                await producer.send_async(topic, f"{PRACTICE}/{raw['message_id']}", value, PRACTICE)
            # the group had committed offset 1; then retention removed offsets 0..3
            c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group, "enable.auto.commit": False})
            c.commit(offsets=[TopicPartition(topic, partition, 1)], asynchronous=False)
            c.close()
            admin = AdminClient({"bootstrap.servers": stack.bootstrap})
            for fut in admin.delete_records([TopicPartition(topic, partition, 4)]).values():
                fut.result(30)
            await runner.start(pipeline)
            try:
                assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.normalized", 0) >= 2, 90), (
                    pipeline.counts
                )
                raw = raw_record(PRACTICE, "hl7v2", oru_r01(control_id="RET-NEW"))
                value = pipeline.serde.encode(f"{topic}-value", "RawMessage", raw)
                await producer.send_async(topic, f"{PRACTICE}/{raw['message_id']}", value, PRACTICE)
                assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.normalized", 0) >= 3, 60), (
                    pipeline.counts
                )
            finally:
                await runner.stop(pipeline)
        finally:
            producer.close()
        return pipeline

    pipeline = asyncio.run(go())
    assert pipeline.counts.get("hl7v2.normalized") == 3  # offsets 4, 5 and the new one; 0..3 are gone
