"""The ClickHouse sink never loses rows and never writes one twice (real broker, real chdb).

Before, the sink was a Faust agent whose offsets were committed independently of the
ClickHouse write; a failed or interrupted write left rows in Kafka that no restart wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from practiceflow.processors.audit import audit_event, chain
from practiceflow.processors.deadletter import dead_letter
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog
from practiceflow.streams.clickhouse_sink import ClickHouseSinkConsumer, committed_lag
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics

pytestmark = pytest.mark.broker

N_FLOW, N_AUDIT, N_DEAD = 150, 40, 30
T0 = 1_780_000_000_000  # 2026: event times inside the tables' retention (TTL, six years by default)


def _produce(stack, cfg) -> dict[str, dict[str, int]]:
    """Records on three sink topics, interleaved; returns the expected raw/FINAL counts."""
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    prefix = cfg.topic_prefix
    sends = []
    for i in range(N_FLOW):
        practice = f"clinic-{i % 3}"
        ev = {
            "practice_id": practice,
            "message_id": f"m{i}",
            "feed": "hl7v2",
            "stage": "normalized",
            "record_type": None,
            "records": 3,
            "latency_ms": None,
            "at": 1_700_000_000_000 + i,
        }
        sends.append(("analytics.flow", f"{practice}/m{i}", ev, practice))
        if i % 5 == 0 and len([s for s in sends if s[0] == "audit"]) < N_AUDIT - 1:
            a = chain(
                None,
                audit_event(practice, actor="t", action="x", entity_type="m", entity_id=f"m{i}", reason="r", at=T0 + i),
            )
            sends.append(("audit", practice, a, practice))
        if i % 5 == 1 and len([s for s in sends if s[0].startswith("dlq")]) < N_DEAD:
            dl = dead_letter(
                practice,
                "hl7v2",
                "normalize",
                "bad",
                "bad",
                f"payload {i}".encode(),
                failed_at=T0 + i,
                message_id=f"d{i}",
            )
            sends.append(("dlq.hl7v2", f"{practice}/d{i}", dl, practice))
    # the audit chain's crash duplicate: the same event (same id and time) chained twice
    dup = audit_event("clinic-0", actor="t", action="dup", entity_type="m", entity_id="d", reason="r", at=T0 + 5)
    sends.append(("audit", "clinic-0", chain(None, dup), "clinic-0"))
    sends.append(("audit", "clinic-0", chain("f" * 64, dup), "clinic-0"))
    for suffix, key, value, practice in sends:
        spec = catalog.BY_SUFFIX[suffix]
        topic = spec.name(prefix)
        producer.send(topic, key, serde.encode(f"{topic}-value", spec.record_type, value), practice)
    producer.close()
    n_audit = sum(1 for s in sends if s[0] == "audit")
    n_dead = sum(1 for s in sends if s[0].startswith("dlq"))
    return {
        "flow_events": {"raw": N_FLOW, "final": N_FLOW},
        "audit_events": {"raw": n_audit, "final": n_audit - 1},
        "dead_letters": {"raw": n_dead, "final": n_dead},
    }


def _assert_exactly_once(counts: dict, expected: dict) -> None:
    """Every record once: raw counts equal the topics' messages. The one audit event the
    chain wrote twice (same event id and time) is one row with FINAL; a background merge
    may already have collapsed it in the raw count too."""
    audit, want = counts.pop("audit_events"), dict(expected)
    want_audit = want.pop("audit_events")
    assert counts == want
    assert audit["final"] == want_audit["final"]
    assert audit["raw"] in (want_audit["raw"], want_audit["raw"] - 1)


def _counts(sink: ClickHouseSink) -> dict[str, dict[str, int]]:
    return {
        t: {
            "raw": sink.query(f"SELECT count() FROM {{db}}.{t}")[0][0],
            "final": sink.query(f"SELECT count() FROM {{db}}.{t} FINAL")[0][0],
        }
        for t in ("flow_events", "audit_events", "dead_letters")
    }


def _wait_drained(bootstrap, group, topics, timeout=90.0) -> int:
    deadline = time.monotonic() + timeout
    lag = committed_lag(bootstrap, group, topics)
    while lag and time.monotonic() < deadline:
        time.sleep(0.3)
        lag = committed_lag(bootstrap, group, topics)
    return lag


def test_clickhouse_outage_is_retried_and_every_row_lands_exactly_once(cfg, stack, tmp_path):
    expected = _produce(stack, cfg)
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    calls = {"n": 0, "lag_during_outage": None}
    group = f"sink-{uuid.uuid4().hex[:6]}"

    def flaky(items, now):
        calls["n"] += 1
        if calls["n"] in (2, 3, 4):  # ClickHouse down for a while, mid-stream
            if calls["n"] == 3:
                calls["lag_during_outage"] = committed_lag(stack.bootstrap, group, list(consumer.topics))
            raise ConnectionError("ClickHouse unreachable")
        if calls["n"] == 5:  # it comes back, but the answer is lost: written, reported as failed
            sink.write_batch(items, now)
            raise TimeoutError("read timed out")
        return sink.write_batch(items, now)

    consumer = ClickHouseSinkConsumer(
        stack.bootstrap,
        AvroSerde(registry_client(stack.registry_url)),
        cfg.topic_prefix,
        sink,
        group_id=group,
        batch_size=25,
        backoff_initial=0.05,
        backoff_max=0.2,
        write=flaky,
    )
    consumer.start()
    try:
        assert _wait_drained(stack.bootstrap, group, list(consumer.topics)) == 0
        consumer.stop()
        assert consumer.error is None
        assert consumer.counts["clickhouse.write_failures"] == 4
        # nothing was committed past the batch that could not be written
        assert calls["lag_during_outage"] is not None and calls["lag_during_outage"] > 0
        _assert_exactly_once(_counts(sink), expected)  # raw counts too: the "lost answer" batch is not doubled
    finally:
        consumer.stop()
        sink.close()  # chdb: one engine path per process


def test_sink_killed_mid_batch_resumes_without_loss_or_duplicates(cfg, stack, tmp_path):
    expected = _produce(stack, cfg)
    dsn = f"chdb://{tmp_path / 'ch'}"
    group = f"sink-{uuid.uuid4().hex[:6]}"
    marker = tmp_path / "mid-batch"
    script = str(Path(__file__).with_name("sink_proc.py"))
    args = [stack.bootstrap, stack.registry_url, cfg.topic_prefix, dsn, group, str(marker)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    crash = subprocess.Popen([sys.executable, script, "crash", *args], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and crash.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the sink never reached its second batch"
        os.kill(crash.pid, signal.SIGKILL)
        crash.wait(10)
    finally:
        if crash.poll() is None:
            crash.kill()
    assert committed_lag(stack.bootstrap, group, [f"{cfg.topic_prefix}.analytics.flow"]) > 0
    drained = subprocess.run(
        [sys.executable, script, "drain", *args], check=False, env=env, capture_output=True, text=True, timeout=240
    )
    assert drained.returncode == 0, drained.stderr[-3000:]
    counts = json.loads(drained.stdout.strip().splitlines()[-1])
    _assert_exactly_once(counts, expected)


def test_practiceflow_sink_command_drains_the_topics_and_stops_on_sigterm(cfg, stack, tmp_path):
    """The production shape: `practiceflow sink` in its own process, stopped by SIGTERM."""
    expected = _produce(stack, cfg)
    dsn = f"chdb://{tmp_path / 'ch'}"
    group = f"sinkcli-{uuid.uuid4().hex[:6]}"
    env = dict(
        os.environ,
        PRACTICEFLOW_KAFKA_BOOTSTRAP=stack.bootstrap,
        PRACTICEFLOW_SCHEMA_REGISTRY_URL=stack.registry_url,
        PRACTICEFLOW_TOPIC_PREFIX=cfg.topic_prefix,
        PRACTICEFLOW_TOPIC_PARTITIONS=str(cfg.topic_partitions),
        PRACTICEFLOW_CLICKHOUSE_DSN=dsn,
        PRACTICEFLOW_STATE_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "practiceflow.cli", "sink", "--group", group, "--batch-size", "50"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        topics = [f"{cfg.topic_prefix}.{s}" for s in ("analytics.flow", "audit", "dlq.hl7v2")]
        assert _wait_drained(stack.bootstrap, group, topics, timeout=120) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()[-2000:] if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    sink = ClickHouseSink(dsn)
    try:
        _assert_exactly_once(_counts(sink), expected)
    finally:
        sink.close()  # chdb: one engine path per process


def test_a_fenced_sink_consumer_is_replaced_and_every_row_still_lands(cfg, stack, tmp_path):
    """With static membership, librdkafka makes FENCED_INSTANCE_ID fatal: the consumer only ever
    returns that error again (a session that timed out while the coordinator moved, librdkafka
    issue 3437). The sink used to log it and poll on, alive and writing nothing for good; it
    now replaces the consumer. Here a second member with the sink's instance id fences it."""
    from confluent_kafka import Consumer

    group, instance = f"sinkfence-{uuid.uuid4().hex[:6]}", f"sink-{uuid.uuid4().hex[:6]}"
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    sink = ClickHouseSink(f"chdb://{tmp_path / 'ch'}")
    consumer = ClickHouseSinkConsumer(
        stack.bootstrap,
        AvroSerde(registry_client(stack.registry_url)),
        cfg.topic_prefix,
        sink,
        group_id=group,
        batch_size=25,
        consumer_config={"group.instance.id": instance, "session.timeout.ms": 6000},
    )
    consumer.start()
    try:
        assert consumer.assigned.wait(60), "the sink never joined its group"
        impostor = Consumer(
            {"bootstrap.servers": stack.bootstrap, "group.id": group, "group.instance.id": instance, "log_level": 0}
        )
        impostor.subscribe(list(consumer.topics))
        deadline = time.monotonic() + 60
        while not consumer.counts.get("clickhouse.consumer_restarts") and time.monotonic() < deadline:
            impostor.poll(0.5)
        impostor.close()
        assert consumer.counts.get("clickhouse.consumer_restarts"), "the sink was never fenced"
        expected = _produce(stack, cfg)  # everything is sent after the fence
        assert _wait_drained(stack.bootstrap, group, list(consumer.topics), timeout=120) == 0
        consumer.stop()
        assert consumer.error is None
        _assert_exactly_once(_counts(sink), expected)
    finally:
        consumer.stop()
        sink.close()
