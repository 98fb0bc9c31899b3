"""The 3-node KRaft mode: replicated topics survive losing one node."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.localstack.stack import LocalStack
from practiceflow.settings import REPO_ROOT
from practiceflow.streams.producer import DurableProducer

pytestmark = pytest.mark.broker


def test_three_node_cluster_keeps_accepting_with_one_node_down(tmp_path):
    stack = LocalStack(tmp_path, nodes=3, registry=False, cache_dir=REPO_ROOT / ".stack" / "cache")
    info = stack.start()
    try:
        admin = AdminClient({"bootstrap.servers": info.bootstrap})
        assert len(admin.list_topics(timeout=10).brokers) == 3
        admin.create_topics([NewTopic("ha", 3, 3, config={"min.insync.replicas": "2"})])["ha"].result()
        producer = DurableProducer(info.bootstrap, 3, delivery_timeout_ms=20000)
        before = producer.send("ha", "clinic/1", b"before", "clinic")
        stack.kafka.kill_node(3)
        after = producer.send("ha", "clinic/2", b"after", "clinic", timeout=30)
        assert after.partition == before.partition and after.offset == before.offset + 1
        producer.close()
    finally:
        stack.stop()
