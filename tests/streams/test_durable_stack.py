"""The local stack keeps its data across down/up; wiping is a separate, explicit command.

Issue 8: ``./pf stack up`` deleted all earlier Kafka data, the audit trail included, while
ClickHouse and the document store kept theirs. Now Kafka's logs, the cluster id, the ports
and the registry's schema ids (an H2 file database) survive a stop and a start; ``stack
wipe`` deletes them and says what it deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.localstack.stack import LocalStack, read_state
from practiceflow.settings import REPO_ROOT
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client

pytestmark = pytest.mark.broker

CACHE = REPO_ROOT / ".stack" / "cache"


def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "durable-check", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        for _ in range(40):
            got += [m.value() for m in c.consume(100, timeout=0.5) if m.error() is None]
            if got:
                break
        return got
    finally:
        c.close()


def test_stack_down_and_up_keeps_topics_and_schema_ids_and_wipe_deletes_them(tmp_path):
    stack = LocalStack(tmp_path, cache_dir=CACHE)
    info = stack.start()
    try:
        admin = AdminClient({"bootstrap.servers": info.bootstrap})
        admin.create_topics([NewTopic("audit-like", 1, 1)])["audit-like"].result(30)
        serde = AvroSerde(registry_client(info.registry_url))
        sid = serde.register("audit-like-value", "AuditEvent")
        producer = DurableProducer(info.bootstrap, 1)
        producer.send("audit-like", "p/1", b"kept", "p")
        producer.close()
    finally:
        stack.stop()
    assert read_state(tmp_path) is None

    again = LocalStack(tmp_path, cache_dir=CACHE)
    info2 = again.start()
    try:
        assert info2.bootstrap == info.bootstrap and info2.registry_url == info.registry_url  # same ports
        assert _read_all(info2.bootstrap, "audit-like") == [b"kept"]
        # the id the old records name still resolves, and registering again gives the same id
        fresh = AvroSerde(registry_client(info2.registry_url))
        assert fresh.client.get_schema(sid).schema_str
        assert fresh.register("audit-like-value", "AuditEvent") == sid
    finally:
        again.stop()

    env = {
        **os.environ,
        "PRACTICEFLOW_STATE_DIR": str(tmp_path),
        "PRACTICEFLOW_CONFIG": str(tmp_path / "none.toml"),
    }
    (tmp_path / "cache").mkdir(exist_ok=True)  # the jar cache is never wiped
    (tmp_path / "cache" / "keep").write_text("jar")
    out = subprocess.run(
        [sys.executable, "-m", "practiceflow.cli", "stack", "wipe"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert f"deleted {tmp_path / 'kafka'}" in out and f"deleted {tmp_path / 'registry'}" in out, out
    assert not (tmp_path / "kafka").exists() and not (tmp_path / "registry").exists()
    assert (tmp_path / "cache" / "keep").exists()
    out = subprocess.run(
        [sys.executable, "-m", "practiceflow.cli", "stack", "wipe"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "nothing to wipe" in out


def test_a_stack_with_another_node_count_is_refused_not_reformatted(tmp_path):
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text(
        json.dumps({"cluster_id": "x", "nodes": 3, "ports": None, "registry_port": None})
    )
    with pytest.raises(Exception, match="stack wipe"):
        LocalStack(tmp_path, nodes=1, cache_dir=CACHE).start()
