"""Create the catalog's topics idempotently at start-up."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.streams.catalog import CATALOG, TopicSpec


def create_topics(
    bootstrap: str,
    prefix: str,
    partitions: int,
    replication: int,
    specs: tuple[TopicSpec, ...] = CATALOG,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create what is missing; report ``created``/``exists`` per topic.

    An existing topic with fewer partitions than the catalog asks for is an error:
    growing it would move practices to other partitions and break their ordering.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    outcome: dict[str, str] = {}
    new = []
    for spec in specs:
        name = spec.name(prefix)
        want = spec.partitions or partitions
        if name in existing:
            have = len(existing[name].partitions)
            if have != want:
                raise RuntimeError(f"topic {name} has {have} partitions, the catalog says {want}")
            outcome[name] = "exists"
            continue
        new.append(NewTopic(name, num_partitions=want, replication_factor=replication, config=spec.topic_config()))
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                fut.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                outcome[name] = "exists"
    return outcome
