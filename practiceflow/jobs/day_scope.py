"""What belongs to one ``practiceflow day`` run on a stack that keeps its data.

The local stack is durable (``stack down``/``up`` keeps Kafka and ClickHouse), so a
second day on the same stack finds the first one's messages in every topic and its rows
in every table. Each day runs its own Faust app (a fresh consumer group and de-dup
table: the generated day repeats the same message ids, which a shared table would count
as resends), so without care it would read all earlier raw messages again and its
summary would count everything ClickHouse ever saw. Two measures:

* :func:`skip_earlier_inputs` commits the new group's offsets at the input topics' current
  ends before the worker joins, so it handles only what this run sends;
* :func:`positions_now` + :func:`since_clause` restrict the ClickHouse summary to rows
  whose Kafka position (every row carries ``kafka_topic``/``kafka_partition``/
  ``kafka_offset``) lies after the positions recorded at the run's start.
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from practiceflow.streams.positions import watermarks


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
