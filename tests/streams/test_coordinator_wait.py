"""Waiting for the group coordinator at start-up (``streams/recovery.wait_for_coordinator``).

The sink and the worker ask before their consumers join, so a normal start-up logs no
"coordinator not available" errors. The question must never cost the process itself: asked
with the Admin API's ListConsumerGroupOffsets, a broker killed mid-request made librdkafka
2.16.0 abort the whole process (rc -6, ``rd_kafka_enq_once_del_source_return: Assertion
`eonce->refcnt > 0'``; librdkafka PR #5397). The chaos harness's broker block lost its
sink to it. The last test kills brokers (the coordinator first) while child processes ask with a
short timeout, so requests are still in flight when they give up; on the Admin API version two
of its twelve children died (SIGSEGV, the same freed request state), and
``bench/repro_coord_abort.py`` counted 15 of 36 SIGABRT (0 of 36 with the fix).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.localstack.kafka import new_cluster
from practiceflow.settings import REPO_ROOT
from practiceflow.streams.recovery import wait_for_coordinator

pytestmark = [pytest.mark.broker, pytest.mark.timeout(400)]

ASK_FOR = r"""
import sys, time
from practiceflow.streams.recovery import wait_for_coordinator
bootstrap, group, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
while time.monotonic() < end:
    wait_for_coordinator(bootstrap, [group], timeout=1.0)  # short: requests still in flight when it gives up
"""


def test_no_broker_is_not_yet_and_ends_in_false_not_an_exception() -> None:
    started = time.monotonic()
    assert wait_for_coordinator("127.0.0.1:1", ["g"], timeout=2.0) is False
    assert time.monotonic() - started < 15  # bounded by the timeout (+ one request), not hung


def test_a_running_broker_answers_and_the_question_joins_no_group(stack) -> None:
    assert wait_for_coordinator(stack.bootstrap, ["pf-test-coordwait"], timeout=30.0) is True
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    described = admin.describe_consumer_groups(["pf-test-coordwait"])["pf-test-coordwait"].result(30)
    assert described.members == []  # asking committed offsets is not joining


def test_killing_the_coordinator_while_processes_ask_never_aborts_them(tmp_path) -> None:
    group = "pf-test-coordkill"
    cluster = new_cluster(tmp_path / "kafka", REPO_ROOT / ".stack" / "cache", nodes=3)
    cluster.start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        for fut in admin.create_topics([NewTopic("coordkill", 1, 3)]).values():
            fut.result(30)
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
        consumer.commit(offsets=[TopicPartition("coordkill", 0, 0)], asynchronous=False)
        consumer.close()
        died: list[tuple[int, str]] = []
        for rnd in range(3):
            coordinator = admin.describe_consumer_groups([group])[group].result(30).coordinator.id
            # the coordinator, then the others: any connection dropped mid-request will do
            victim = coordinator if rnd == 0 else cluster.nodes[rnd % len(cluster.nodes)].node_id
            askers = [
                subprocess.Popen(
                    [sys.executable, "-c", ASK_FOR, cluster.bootstrap, group, "10"],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            time.sleep(2.5)  # past the children's imports: they are asking
            cluster.kill_node(victim)
            time.sleep(2.0)
            cluster.restart_node(victim)
            for asker in askers:
                _, err = asker.communicate(timeout=120)
                if asker.returncode != 0:
                    died.append((asker.returncode, err[-400:]))
            time.sleep(3.0)  # the restarted node catches up before the next round
            admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        assert died == []
    finally:
        cluster.stop()
