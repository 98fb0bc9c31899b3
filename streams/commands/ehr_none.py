"""``cmd.ehr_write`` of practices without an EHR target -> answered ``no_ehr`` on ``cmd.results``.

The pure decision and the WHY are in :mod:`practiceflow.processors.ehr.no_target`. Commands of
practices that have an EHR (setting ``ehr_fhir``) are left to ``practiceflow ehr sync``, which
reads the topic from the beginning and needs no offsets of ours. Commit rule as for every
agent: the answers are confirmed before the batch's offsets are committed; a replay answers
again under the same key, and the results handler opens the person's item only once.

The cut-off (review s19 S5): the table ``ehr-no-target`` keeps, per partition, the time this
agent first ran there (the worker's start, written with the partition's first command and
confirmed before the commit, so a restart keeps it). Commands issued before it are the
upgrade's backlog: answered ``no_ehr`` but marked, so no "by hand" item floods the queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from practiceflow.processors.ehr.no_target import answer_without_target
from practiceflow.streams import catalog
from practiceflow.streams.batches import run_batches
from practiceflow.streams.clock import now_ms
from practiceflow.streams.metrics import COMMAND_RESULTS
from practiceflow.streams.offsets import Committer, Outbox, in_event

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline


def register(pipeline: Pipeline) -> None:
    """The ``ehr-no-target`` agent on ``cmd.ehr_write`` (streams/workflows MODULES)."""
    topic = pipeline.topics["cmd.ehr_write"]
    committer = Committer(pipeline.app, pipeline.committed_offsets, "ehr-no-target", topic.topics)
    options = {"driver": "rocksdict"} if pipeline.cfg.table_store.startswith("rocksdb") else None
    table = pipeline.app.Table("ehr-no-target", default=None, partitions=pipeline.partitions, options=options)
    started = now_ms()  # the cut-off of a partition this agent has never answered in

    async def batch(events: list[Any]) -> None:
        admitted = await committer.admit(events)
        if not admitted:
            return
        configured = set(pipeline.cfg.ehr_fhir)
        outbox = Outbox()
        writes = pipeline.outbox()
        for ev in admitted:
            key = f"since:{ev.message.partition}"
            with in_event(ev):
                since = table.get(key)
                if since is None:  # this partition's first command ever: the cut-off is now
                    since = started
                    writes.table_write(table, ev, key, since)
            res = answer_without_target(ev.value, configured, now_ms(), int(since))
            if res is None:
                continue
            partition = catalog.partition_for(res["practice_id"], pipeline.partitions)
            await outbox.send(
                pipeline.topics["cmd.results"], f"{res['practice_id']}/{res['command_id']}", res, partition
            )
            COMMAND_RESULTS.labels("ehr_write", res["outcome"]).inc()
            outbox.after(pipeline._count, "ehr_write.no_ehr")
            pipeline.sensor.touch(ev.message.tp)
        await outbox.confirm()
        await writes.confirm()
        await committer.commit(admitted)

    async def ehr_no_target(stream: Any) -> None:
        await run_batches(pipeline, stream, batch, "ehr no target")

    pipeline.app.agent(topic, name="ehr-no-target")(ehr_no_target)
    pipeline.source_topics.add(topic.get_topic_name())
