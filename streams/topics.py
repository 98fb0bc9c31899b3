"""Create the catalog's topics idempotently at start-up, and keep their config current.

An existing topic whose cleanup policy or retention differs from the catalog is
updated in place (incremental alter, only the catalog's own keys), so a catalog change
such as "patients are compacted, never deleted by age" reaches clusters created by an
earlier version. Other keys an operator set by hand are left alone. Partition counts
are never changed (see :func:`create_topics`).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from practiceflow.streams.catalog import CATALOG, TopicSpec

log = logging.getLogger("practiceflow.topics")

# errors of a broker that is starting, loaded or between controllers: asked again, not fatal
_NOT_READY = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN,  # "Unknown broker error": a create racing the controller's start-up
}


def create_topics(
    bootstrap: str,
    prefix: str,
    partitions: int,
    replication: int,
    specs: tuple[TopicSpec, ...] = CATALOG,
    timeout: float = 30.0,
    wait: float = 180.0,
) -> dict[str, str]:
    """Create what is missing and update drifted config; report ``created``/``exists``/``updated``.

    An existing topic with fewer partitions than the catalog asks for is an error:
    growing it would move practices to other partitions and break their ordering.

    A broker that is not ready (a metadata request timed out, no controller yet) is asked again
    for up to ``wait`` seconds, one warning per try: a gateway or worker started with, or just
    before, its broker waits for it instead of exiting (each step is idempotent). Any other
    error, or one still there after ``wait``, is raised.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return _create_topics_once(bootstrap, prefix, partitions, replication, specs, timeout)
        except KafkaException as exc:
            err = exc.args[0]
            not_ready = isinstance(err, KafkaError) and (err.retriable() or err.code() in _NOT_READY)
            if not not_ready or time.monotonic() >= deadline:
                raise
            log.warning("creating topics: the broker did not answer (%s: %s); asking again", err.name(), err.str())
            time.sleep(1.0)


def _create_topics_once(
    bootstrap: str,
    prefix: str,
    partitions: int,
    replication: int,
    specs: tuple[TopicSpec, ...],
    timeout: float,
) -> dict[str, str]:
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
            if _update_config(admin, name, spec.topic_config(), timeout):
                outcome[name] = "updated"
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


def _update_config(admin: AdminClient, name: str, want: dict[str, str], timeout: float) -> bool:
    """Set the catalog's config keys on an existing topic where they differ; True if changed."""
    resource = ConfigResource(ResourceType.TOPIC, name)
    have = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    drift = {k: v for k, v in want.items() if k not in have or have[k].value != v}
    if not drift:
        return False
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()]
    change = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
    admin.incremental_alter_configs([change], request_timeout=timeout)[change].result(timeout)
    return True
