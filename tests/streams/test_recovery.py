"""Recovery: the worker joins with a static group membership (KIP-345) and a short session.

A restarted worker with the same ``group.instance.id`` replaces its dead predecessor at
once instead of waiting for the broker to expire the dead member's session (issue 8:
51 s). The time itself is measured by the chaos harness (``bench/CHAOS.md``), not here.
"""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka.admin import AdminClient

from practiceflow.settings import Settings
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.recovery import instance_id, librdkafka_settings
from practiceflow.streams.topics import create_topics


def test_instance_ids_are_stable_per_worker_and_distinct_between_workers(tmp_path):
    a = Settings(state_dir=tmp_path / "a")
    assert instance_id(a, "worker") == instance_id(Settings(state_dir=tmp_path / "a"), "worker")
    assert instance_id(a, "worker") != instance_id(Settings(state_dir=tmp_path / "b"), "worker")
    assert instance_id(a, "worker") != instance_id(a, "sink")
    assert instance_id(Settings(state_dir=tmp_path, worker_instance_id=""), "worker") is None
    assert instance_id(Settings(worker_instance_id="clinic-w1"), "sink") == "clinic-w1-sink"
    assert librdkafka_settings(Settings(worker_instance_id="", worker_session_timeout_s=12)) == {
        "session.timeout.ms": 12000
    }


@pytest.mark.broker
def test_the_worker_and_its_sink_join_their_groups_as_static_members(cfg, stack):
    from practiceflow.sinks.clickhouse import ClickHouseSink

    async def go() -> dict[str, list]:
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, sink=sink)
        pipeline.register_schemas()
        await runner.start(pipeline)
        try:
            assert pipeline.app.conf.broker_session_timeout == cfg.worker_session_timeout_s
            admin = AdminClient({"bootstrap.servers": stack.bootstrap})
            groups = [cfg.consumer_group, runner.sink_group(pipeline)]
            members: dict[str, list] = {}
            for _ in range(60):
                described = {g: f.result(10) for g, f in admin.describe_consumer_groups(groups).items()}
                members = {g: [m.group_instance_id for m in d.members] for g, d in described.items()}
                if all(members.values()):
                    break
                await asyncio.sleep(0.5)
            return members
        finally:
            await runner.stop(pipeline)
            sink.close()  # chdb: one engine path per process; later tests open their own

    members = asyncio.run(go())
    assert members[cfg.consumer_group] == [instance_id(cfg, "worker")]
    assert list(members.values())[1] == [instance_id(cfg, "sink-thread")]
