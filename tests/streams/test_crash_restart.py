"""kill -9 of the worker mid-stream, several times, then a restart: nothing lost, nothing doubled.

The worker runs as its own process (``crash_worker.py``: the production Pipeline under
``faust.Worker``) against the session broker. A few thousand distinct ORU^R01 messages
stream into the raw topic while the worker is SIGKILLed at three points; after the last
restart drains, every raw message must have exactly one outcome (normalized or dead
letter), the audit topic must hold no event id twice, and every practice's chain must
verify. Before the commit fix (issue 8) runs of this kind lost consecutive messages
whose offsets Faust had committed without processing them, and wrote audit events twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from practiceflow.jobs.run_file import raw_record
from practiceflow.processors.audit import verify_chain
from practiceflow.processors.hl7.normalize import message_id_for
from practiceflow.settings import REPO_ROOT
from practiceflow.streams import catalog
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

N_MESSAGES = 1200
PRACTICES = [f"crash-{c}" for c in "abcdef"]
KILL_AT = (0.15, 0.45, 0.7)  # fraction of messages with an outcome when the worker is killed


def _worker_env(cfg, stack) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PRACTICEFLOW_KAFKA_BOOTSTRAP=stack.bootstrap,
        PRACTICEFLOW_SCHEMA_REGISTRY_URL=stack.registry_url,
        PRACTICEFLOW_TOPIC_PREFIX=cfg.topic_prefix,
        PRACTICEFLOW_TOPIC_PARTITIONS=str(cfg.topic_partitions),
        PRACTICEFLOW_CONSUMER_GROUP=cfg.consumer_group,
        PRACTICEFLOW_STATE_DIR=str(cfg.state_dir),
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def _start_worker(cfg, stack, log: Path) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "streams" / "crash_worker.py")],
        env=_worker_env(cfg, stack),
        cwd=cfg.state_dir,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


class TopicReader:
    """Reads a topic from the beginning, incrementally, decoding Avro values."""

    def __init__(self, bootstrap: str, topic: str, serde: AvroSerde) -> None:
        self.serde = serde
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"check-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([topic])
        self.values: list[dict] = []

    def poll(self, seconds: float = 0.5) -> None:
        for msg in self.consumer.consume(num_messages=5000, timeout=seconds):
            if msg.error() is None and msg.value() is not None:
                self.values.append(self.serde.decode(msg.value()))

    def close(self) -> None:
        self.consumer.close()


def _outcomes(flow: list[dict]) -> dict[str, Counter]:
    by_id: dict[str, Counter] = defaultdict(Counter)
    for ev in flow:
        if ev["stage"] in ("normalized", "dead_lettered", "duplicate"):
            by_id[ev["message_id"]][ev["stage"]] += 1
    return by_id


def _normalized_ids(audit: list[dict]) -> set[str]:
    return {ev["entity_id"] for ev in audit if ev["action"] == "normalized"}


def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(cfg, stack, tmp_path):
    prefix = cfg.topic_prefix
    create_topics(stack.bootstrap, prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    raw_topic = f"{prefix}.raw.hl7v2"
    raw_subject = f"{raw_topic}-value"
    serde.register(raw_subject, "RawMessage")
    assert len({catalog.partition_for(p, cfg.topic_partitions) for p in PRACTICES}) >= 2

    raws = [
        raw_record(
            PRACTICES[i % len(PRACTICES)],
            "hl7v2",
            oru_r01(control_id=f"CR{i:06d}", mrn=f"MRN{i % 97}"),
            message_id=message_id_for("LAB", "ACME LAB", f"CR{i:06d}"),  # as the MLLP gateway names it
        )
        for i in range(N_MESSAGES)
    ]
    ids = {r["message_id"] for r in raws}
    assert len(ids) == N_MESSAGES

    def produce() -> None:
        p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for i, raw in enumerate(raws):
            p.produce(
                raw_topic,
                key=f"{raw['practice_id']}/{raw['message_id']}".encode(),
                value=serde.encode(raw_subject, "RawMessage", raw),
                partition=catalog.partition_for(raw["practice_id"], cfg.topic_partitions),
            )
            p.poll(0)
            if i % 100 == 99:
                time.sleep(0.25)  # ~400 msg/s offered
        assert p.flush(30) == 0

    flow = TopicReader(stack.bootstrap, f"{prefix}.analytics.flow", serde)
    log = Path(os.environ.get("PRACTICEFLOW_TEST_WORKER_LOG") or tmp_path / "worker.log")
    worker = _start_worker(cfg, stack, log)
    sender = threading.Thread(target=produce, daemon=True)
    sender.start()
    kills = 0
    try:
        for frac in KILL_AT:
            deadline = time.monotonic() + 120
            while len(_outcomes(flow.values)) < frac * N_MESSAGES and time.monotonic() < deadline:
                assert worker.poll() is None, log.read_text()[-3000:]
                flow.poll()
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            worker = _start_worker(cfg, stack, log)
        sender.join(60)
        deadline = time.monotonic() + 150
        while len(_outcomes(flow.values)) < N_MESSAGES and time.monotonic() < deadline:
            flow.poll()
        time.sleep(3)  # anything written twice after the last outcome shows up too
        flow.poll(2)
        # The audit chain agent chains pf.audit.in into pf.audit behind the normalizer: wait, with the
        # worker still running, until every message's "normalized" event is chained (stopping the worker
        # first would leave the rest in pf.audit.in until the next start, which is not a loss).
        audit = TopicReader(stack.bootstrap, f"{prefix}.audit", serde)
        audit_started = time.monotonic()
        deadline = audit_started + 180
        while not ids <= _normalized_ids(audit.values) and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            audit.poll()
        print(f"\naudit chain caught up {time.monotonic() - audit_started:.1f} s after the last outcome")
        audit.poll(2)
        audit.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        flow.close()

    outcomes = _outcomes(flow.values)
    missing = ids - set(outcomes)
    assert kills == len(KILL_AT)
    assert not missing, f"{len(missing)} raw messages without any outcome"
    # one outcome per message: never normalized and dead-lettered, never counted as its own duplicate
    mixed = {m: c for m, c in outcomes.items() if len(c) != 1}
    assert not mixed, f"{len(mixed)} messages with more than one kind of outcome, e.g. {list(mixed.items())[:3]}"
    doubled = sum(1 for c in outcomes.values() if sum(c.values()) > 1)
    print(f"\n{N_MESSAGES} messages, {kills} kills: outcome written twice (same kind, idempotent) for {doubled}")

    event_ids = Counter(ev["event_id"] for ev in audit.values)
    twice = {k: n for k, n in event_ids.items() if n > 1}
    assert not twice, f"{len(twice)} audit event ids written more than once"
    normalized_events = _normalized_ids(audit.values)
    assert ids <= normalized_events, f"{len(ids - normalized_events)} messages without their audit event"
    by_practice: dict[str, list[dict]] = defaultdict(list)
    for ev in audit.values:
        by_practice[ev["practice_id"]].append(ev)
    for practice, events in by_practice.items():
        assert verify_chain(events) == (True, -1), practice
