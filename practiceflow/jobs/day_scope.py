"""What belongs to one ``practiceflow day`` run on a stack that keeps its data.

The local stack is durable (``stack down``/``up`` keeps Kafka and ClickHouse), so a
second day on the same stack finds the first one's messages in every topic and its rows
in every table. Each day runs its own Faust app (a fresh consumer group and de-dup
table: the generated day repeats the same message ids, which a shared table would count
as resends), so without care it would read all earlier raw messages again and its
summary would count everything ClickHouse ever saw. Two measures:

* :func:`skip_earlier_runs` commits the new groups' offsets at the current ends of EVERY
  topic the worker reads (raw feeds and retries, but also the normalized records, cmd.*,
  cmd.results, decisions: ``pipeline.source_topics``) and of the sink's topics, before the
  worker joins, so it handles only what this run sends. Skipping only the raw topics was not
  enough: the workflow agents and command executors of the fresh group started at the
  earliest offset and stepped the earlier runs' forms, refills, claims and 270 commands again
  (doubled counts; the old 270s' deadlines had passed, so every check read ``timeout``);
* :func:`positions_now` + :func:`since_clause` restrict the ClickHouse summary to rows
  whose Kafka position (every row carries ``kafka_topic``/``kafka_partition``/
  ``kafka_offset``) lies after the positions recorded at the run's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from confluent_kafka import Consumer, TopicPartition

from practiceflow.streams.positions import watermarks

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline


def _high_water(probe: Consumer, tp: TopicPartition, timeout: float) -> int:
    # topics the day just created may not have elected their leaders yet: asked again meanwhile
    return watermarks(probe, tp, timeout)[1]


def positions_now(bootstrap: str, topics: list[str], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """(topic, partition) -> high-water mark now, for every partition of ``topics``."""
    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "practiceflow-day-probe", "enable.auto.commit": False}
    )
    try:
        out: dict[tuple[str, int], int] = {}
        for topic in topics:
            meta = probe.list_topics(topic, timeout=timeout).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                out[(topic, p)] = _high_water(probe, TopicPartition(topic, p), timeout)
        return out
    finally:
        probe.close()


def skip_earlier_inputs(bootstrap: str, group: str, positions: dict[tuple[str, int], int]) -> None:
    """Commit ``group``'s offsets at ``positions`` (a group nobody has joined yet accepts a
    plain commit), so its worker starts after everything earlier runs left there."""
    if not positions:
        return
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, p, off) for (t, p), off in positions.items()], asynchronous=False)
    finally:
        c.close()


def skip_earlier_runs(bootstrap: str, pipeline: Pipeline, sink_positions: dict[tuple[str, int], int]) -> None:
    """Start ``pipeline``'s worker group after everything earlier runs left on the topics it
    reads, and its ClickHouse sink group at ``sink_positions`` (the run's start). Call it after
    the pipeline registered its agents (they fill ``source_topics``) and before it starts."""
    from practiceflow.streams.runner import sink_group

    skip_earlier_inputs(bootstrap, pipeline.app.conf.id, positions_now(bootstrap, sorted(pipeline.source_topics)))
    skip_earlier_inputs(bootstrap, sink_group(pipeline), sink_positions)


def since_clause(positions: dict[tuple[str, int], int]) -> tuple[str, dict[str, object]]:
    """A WHERE fragment (and its parameters) for rows at or after ``positions``; rows of a
    partition not recorded (a topic created later) count as this run's."""
    if not positions:
        return "1", {}
    params: dict[str, object] = {}
    terms = []
    topics = sorted({t for t, _ in positions})
    for i, topic in enumerate(topics):
        params[f"st{i}"] = topic
    index = {t: i for i, t in enumerate(topics)}
    for (topic, partition), offset in sorted(positions.items()):
        terms.append(
            f"(kafka_topic = %(st{index[topic]})s AND kafka_partition = {int(partition)} "
            f"AND kafka_offset >= {int(offset)})"
        )
    params["st_known"] = topics
    terms.append("kafka_topic NOT IN %(st_known)s")
    return "(" + " OR ".join(terms) + ")", params
