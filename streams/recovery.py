"""How a restarted worker gets its partitions back quickly (issue 8: 51 s -> seconds).

A worker killed with SIGKILL sends no LeaveGroup; with dynamic membership its
successor's JoinGroup waits until the broker expires the dead member's session
(Faust's default ``broker_session_timeout`` is 60 s). Two measures:

* **Static group membership** (KIP-345, ``group.instance.id``). faust-streaming 0.15
  passes ``consumer_group_instance_id`` to aiokafka 0.14's ``AIOKafkaConsumer``
  (``faust/transport/drivers/aiokafka.py`` ``_create_worker_consumer``), and aiokafka
  sends it in JoinGroup v5. A member that rejoins with the same instance id replaces
  the dead one at once: the broker fences the old member id instead of waiting for its
  session. The id must be unique per live worker (two workers with one id fence each
  other), so ``auto`` derives it from the host name and the worker's state directory,
  which is already unique per worker (its RocksDB folder holds a lock).
  The ClickHouse sink (librdkafka) gets its own ``group.instance.id`` the same way.
* **A short session** (``worker_session_timeout_s``, 10 s): a worker that is gone for
  good (or runs with static membership off) hands its partitions on within that time.

State on disk: the tables live in RocksDB under ``<state_dir>/worker/<app id>``; Faust's
RocksDB store keeps each changelog partition's offset beside the data, so a restart
reads only the changelog written since (``streams/app.py``).
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from practiceflow.settings import Settings


def instance_id(cfg: Settings, role: str) -> str | None:
    """The ``group.instance.id`` of this worker's ``role`` (``worker`` or ``sink``), or None
    for dynamic membership. Host name + a digest of the resolved state dir: stable across
    restarts of the same worker, different for two workers (they cannot share a state dir)."""
    setting = cfg.worker_instance_id.strip()
    if not setting:
        return None
    if setting != "auto":
        return f"{setting}-{role}"
    where = hashlib.sha256(str(Path(cfg.state_dir).resolve()).encode()).hexdigest()[:10]
    return f"{socket.gethostname()}-{where}-{role}"


def configure_faust(conf: object, cfg: Settings) -> None:
    """Static membership and the session timeout on a Faust app's settings (before start)."""
    conf.consumer_group_instance_id = instance_id(cfg, "worker")  # type: ignore[attr-defined]
    conf.broker_session_timeout = cfg.worker_session_timeout_s  # type: ignore[attr-defined]
    conf.broker_heartbeat_interval = max(1.0, cfg.worker_session_timeout_s / 5)  # type: ignore[attr-defined]


def librdkafka_settings(cfg: Settings, role: str = "sink") -> dict[str, object]:
    """The same for a confluent-kafka consumer (the ClickHouse sink)."""
    out: dict[str, object] = {"session.timeout.ms": int(cfg.worker_session_timeout_s * 1000)}
    iid = instance_id(cfg, role)
    if iid:
        out["group.instance.id"] = iid
    return out


def wait_for_coordinator(bootstrap: str, groups: list[str], timeout: float = 60.0) -> bool:
    """Wait until the broker can coordinate ``groups`` (its ``__consumer_offsets`` exists and
    has leaders) before a consumer joins.

    On a fresh or just-restarted cluster the first FindCoordinator answers
    COORDINATOR_NOT_AVAILABLE while the offsets topic is created or its leaders elected;
    aiokafka logs that at ERROR and librdkafka prints it too, so every normal start-up
    looked broken (issue 8). Asking here, quietly, first makes the clients' own first
    request succeed. Returns False (and lets the clients retry as they would) on timeout.

    A request that gets no answer in time (a broker killed or restarting: the chaos harness's
    broker block) is one more "not yet", like an error answer: it used to raise
    ``TimeoutError`` out of here and stop the ClickHouse sink at start-up.

    Why a consumer's ``committed`` and not ``AdminClient.list_consumer_group_offsets``: the
    Admin API's coordinator-targeted requests abort the whole process in librdkafka 2.16.0
    when their connection drops mid-request (``rd_kafka_enq_once_del_source_return: Assertion
    `eonce->refcnt > 0'``: the error path frees the request's state and then uses it;
    librdkafka PR #5397). A sink or worker starting while a broker was killed died with
    rc -6 that way (bench/repro_coord_abort.py). The consumer's offset fetch goes through its
    own group coordinator, not that code, and asks the same question: can the coordinator
    answer for this group? The consumer never subscribes, so it joins no group.
    """
    import time

    from confluent_kafka import Consumer, KafkaException, TopicPartition

    deadline = time.monotonic() + timeout
    consumers: list[Consumer] = []
    try:
        for group in groups:
            conf = {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0, "enable.auto.commit": False}
            consumers.append(Consumer(conf))
        while time.monotonic() < deadline:
            try:
                for consumer in consumers:
                    wait = max(0.1, min(10.0, deadline - time.monotonic()))
                    # Any partition will do: the OffsetFetch goes to the group's coordinator, which
                    # answers only once it can coordinate the group; the answer (no offset, or a
                    # per-partition error for that partition) is not what is asked, so it is ignored.
                    consumer.committed([TopicPartition("__consumer_offsets", 0)], timeout=wait)
                return True
            except KafkaException:
                time.sleep(0.3)
        return False
    finally:
        for consumer in consumers:
            consumer.close()
