"""`practiceflow day` on a stack that keeps its data: it reads and sums only its own run."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from practiceflow.jobs.day_scope import positions_now, since_clause, skip_earlier_inputs
from practiceflow.jobs.run_file import raw_record
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01


def test_since_clause_counts_only_rows_after_the_runs_start_positions(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}", "practiceflow")
    try:
        sink.query("CREATE TABLE {db}.t (kafka_topic String, kafka_partition Int32, kafka_offset Int64) ENGINE = Log")
        rows = [("a", 0, 5), ("a", 0, 9), ("a", 1, 2), ("b", 0, 0), ("new", 0, 0)]
        sink.client.insert(f"{sink.database}.t", rows, column_names=["kafka_topic", "kafka_partition", "kafka_offset"])
        where, params = since_clause({("a", 0): 9, ("a", 1): 0, ("b", 0): 1})
        got = sink.query(f"SELECT kafka_topic, kafka_offset FROM {{db}}.t WHERE {where} ORDER BY ALL", params)
        assert got == [("a", 2), ("a", 9), ("new", 0)] or sorted(got) == [("a", 2), ("a", 9), ("new", 0)]
    finally:
        sink.close()


@pytest.mark.broker
def test_a_second_day_does_not_read_the_first_days_raw_messages(cfg, stack):
    topic = f"{cfg.topic_prefix}.raw.hl7v2"

    async def go() -> dict[str, int]:
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        group = f"{cfg.consumer_group}-day-{uuid.uuid4().hex[:6]}"
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, app_id=group)
        pipeline.register_schemas()
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            for i in range(3):  # the first run's messages, already on the topic
                raw = raw_record("clinic-d", "hl7v2", oru_r01(control_id=f"FIRST{i}"))
                value = pipeline.serde.encode(f"{topic}-value", "RawMessage", raw)
                await producer.send_async(topic, f"clinic-d/{raw['message_id']}", value, "clinic-d")
            skip_earlier_inputs(stack.bootstrap, group, positions_now(stack.bootstrap, [topic]))
            await runner.start(pipeline)
            try:
                raw = raw_record("clinic-d", "hl7v2", oru_r01(control_id="SECOND"))
                value = pipeline.serde.encode(f"{topic}-value", "RawMessage", raw)
                await producer.send_async(topic, f"clinic-d/{raw['message_id']}", value, "clinic-d")
                assert await runner.wait_for(lambda: pipeline.handled() >= 1, 60)
                await asyncio.sleep(3)  # had it started at the beginning, the first three would show now
            finally:
                await runner.stop(pipeline)
        finally:
            producer.close()
        return dict(pipeline.counts)

    counts = asyncio.run(go())
    assert counts.get("hl7v2.normalized") == 1, counts


@pytest.mark.broker
def test_a_second_day_starts_every_topic_its_worker_reads_after_the_first_days_messages(cfg, stack, request):
    """Not only the raw feeds: the workflow agents and command executors read normalized
    records, cmd.* and cmd.results. A second ``practiceflow day`` on a kept stack used to start
    those at the earliest offset and step the first day's intake forms, refills, claims and
    270 commands again (doubled counts; the old 270s' deadlines had passed: all ``timeout``)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from practiceflow.jobs.day_scope import skip_earlier_runs
    from practiceflow.streams.clickhouse_sink import sink_topics

    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    group = f"{cfg.consumer_group}-day-{uuid.uuid4().hex[:6]}"
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, app_id=group)
    request.addfinalizer(pipeline.close)  # its Kafka clients (review s20 N7)
    earlier = [f"{cfg.topic_prefix}.{s}" for s in ("cmd.eligibility", "cmd.results", "norm.intake_form")]
    earlier = [t for t in earlier if t in pipeline.source_topics]
    assert f"{cfg.topic_prefix}.cmd.eligibility" in earlier, sorted(pipeline.source_topics)
    first = Producer({"bootstrap.servers": stack.bootstrap})
    for topic in earlier:  # the first day's messages (bytes: nobody decodes them here)
        for p in range(cfg.topic_partitions):
            first.produce(topic, b"first day", partition=p)
    assert first.flush(30) == 0
    sink_at = positions_now(stack.bootstrap, list(sink_topics(cfg.topic_prefix)))
    skip_earlier_runs(stack.bootstrap, pipeline, sink_at)

    def committed(group_id: str, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group_id, "enable.auto.commit": False})
        try:
            return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=30)}
        finally:
            c.close()

    worker = committed(group, [TopicPartition(t, p) for t in earlier for p in range(cfg.topic_partitions)])
    assert worker == {(t, p): 1 for t in earlier for p in range(cfg.topic_partitions)}
    sink = committed(runner.sink_group(pipeline), [TopicPartition(t, p) for (t, p) in sink_at])
    assert sink == sink_at


@pytest.mark.broker
@pytest.mark.timeout(600)
def test_a_second_day_with_the_same_seed_on_the_same_stack_runs_like_the_first(cfg, stack, caplog):
    """Issue 8: two ``practiceflow day`` runs, same seed, one stack (a reduced day, like test_main_job).

    With the first day's fax files again, the second day's ``cmd.llm`` commands had the first
    day's ids (a hash of the document and the question): the executor skipped them as answered,
    and the day waited 120 s for answers its own scope never saw (one of three came). And the
    audit chain of the second day's new worker group, whose table has no checkpoint yet, took
    over the first day's chain from ``pf.audit`` and warned of events "written before a crash"."""
    import logging

    from practiceflow.jobs.day import new_run_id, run_day
    from practiceflow.sampleday.generate import build_day

    caplog.set_level(logging.INFO, logger="practiceflow.worker.audit")
    workers = []
    for _ in range(2):  # a new run id each time, as `practiceflow day` draws one
        plan = build_day(seed=3, n_patients=8, practice_id="clinic-twice", run_id=new_run_id())
        report = asyncio.run(run_day(cfg, stack.bootstrap, stack.registry_url, plan, timeout=240))
        assert report.drained
        workers.append(report.worker)
    first, second = workers
    asked = first.get("commands.llm", 0)
    assert asked >= 1 and first.get("fax.llm.results", 0) == asked, first
    # the second day asked as many questions and got every answer within its own run
    assert second.get("commands.llm", 0) == asked and second.get("fax.llm.results", 0) == asked, second
    # the model answered in both runs (how many of the three it answered, not a fallback, may vary under load)
    assert first.get("fax.llm.source.model", 0) >= 1 and second.get("fax.llm.source.model", 0) >= 1
    # its chain went on from the first day's events, and that is not reported as a crash repair
    assert second.get("audit.continued", 0) > 0 and not second.get("audit.recovered"), second
    crash = [r.getMessage() for r in caplog.records if "before a crash" in r.getMessage()]
    assert not crash, crash
