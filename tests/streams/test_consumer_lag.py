"""The worker's ``practiceflow_consumer_lag`` gauge exists for every assigned partition from the
start (issue 13): the member consumer knows a partition's high-water mark only after a fetch, so
on a fresh or idle worker the gauge, set from that alone, was missing and the dashboards' lag
panel and the lag alert had no data. Real broker and registry, the worker in-process.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from practiceflow.jobs.run_file import raw_record
from practiceflow.streams import catalog, metrics, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01

pytestmark = pytest.mark.broker

PRACTICE = "clinic-lag"


def lag_gauge() -> dict[tuple[str, int], float]:
    """(topic, partition) -> value of every ``practiceflow_consumer_lag`` series now exported."""
    return {
        (s.labels["topic"], int(s.labels["partition"])): s.value
        for m in REGISTRY.collect()
        if m.name == "practiceflow_consumer_lag"
        for s in m.samples
    }


def test_every_assigned_partition_reports_its_lag_before_the_consumer_fetched_it(cfg, stack):
    cfg = cfg.model_copy(update={"practices": [PRACTICE]})
    raw = f"{cfg.topic_prefix}.raw.hl7v2"
    tp_raw = (raw, catalog.partition_for(PRACTICE, cfg.topic_partitions))

    async def go() -> None:
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        await runner.start(pipeline)
        try:
            await asyncio.wait_for(pipeline.app.tables.recovery.completed.wait(), 90)  # else it resumes all
            consumer = pipeline.app.consumer
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment() if tp.topic in pipeline.source_topics}
            assert tp_raw in assigned and len(assigned) > 50
            # What aiokafka answers for a partition it has not fetched from yet (a fresh worker,
            # or one Faust holds back): no high-water mark. Fixed here so the check does not
            # depend on how far the first fetches got.
            consumer.highwater = lambda tp: None  # type: ignore[method-assign]
            # three messages the worker cannot take yet: their partition is paused, as Faust
            # pauses partitions while it recovers tables
            (tp,) = [t for t in consumer.assignment() if (t.topic, t.partition) == tp_raw]
            consumer.pause_partitions([tp])
            for i in range(3):
                rec = raw_record(PRACTICE, "hl7v2", oru_r01(control_id=f"LAG{i}"))
                value = pipeline.serde.encode(f"{raw}-value", "RawMessage", rec)
                await producer.send_async(raw, f"{PRACTICE}/{rec['message_id']}", value, PRACTICE)

            await metrics.refresh(pipeline)  # what a scrape of /metrics does
            lag = lag_gauge()
            assert set(lag) == assigned  # every assigned input partition has a series, none other
            assert lag[tp_raw] == 3
            assert all(v == 0 for k, v in lag.items() if k != tp_raw)

            # once the worker takes and commits them the lag reads 0
            consumer.resume_partitions([tp])
            assert await runner.wait_for(lambda: pipeline.counts.get("hl7v2.normalized", 0) >= 3, 120)

            async def committed() -> int:
                return (await pipeline.committed_offsets.read([tp]))[tp]

            for _ in range(600):
                if await committed() >= 3:
                    break
                await asyncio.sleep(0.2)
            await metrics.refresh(pipeline)
            assert lag_gauge()[tp_raw] == 0
        finally:
            producer.close()
            await runner.stop(pipeline)

    asyncio.run(go())
