"""Waiting for the group coordinator at start-up (``streams/recovery.wait_for_coordinator``).

The sink and the worker ask before their consumers join, so a normal start-up logs no
"coordinator not available" errors. The question must never cost the process itself: asked
with the Admin API's ListConsumerGroupOffsets, a broker killed mid-request made librdkafka
2.16.0 abort the whole process (rc -6, ``rd_kafka_enq_once_del_source_return: Assertion
`eonce->refcnt > 0'``; librdkafka PR #5397). The chaos harness's broker block lost its
sink to it. The last test kills brokers (the coordinator first) while child processes ask with a
short timeout, so requests are still in flight when they give up. On the Admin API version it
failed about one run in three (two of its twelve children died with SIGSEGV, the same freed
request state; review s24 ran it three times), so the first test pins the cause itself: no
AdminClient at all. ``bench/repro_coord_abort.py`` counted 15 of 36 SIGABRT (0 of 36 with the fix).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from practiceflow.localstack.kafka import new_cluster
from practiceflow.settings import REPO_ROOT
from practiceflow.streams.recovery import wait_for_coordinator

pytestmark = pytest.mark.timeout(400)

ASK_FOR = r"""
import sys, time
from practiceflow.streams.recovery import wait_for_coordinator
bootstrap, group, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
while time.monotonic() < end:
    wait_for_coordinator(bootstrap, [group], timeout=1.0)  # short: requests still in flight when it gives up
"""


def test_the_question_is_never_asked_through_the_admin_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash class itself (review s24 S1): a coordinator-targeted Admin API request in flight
    when its broker dies. ``wait_for_coordinator`` must not create an AdminClient at all."""
    import confluent_kafka.admin

    class Refused:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("wait_for_coordinator created an AdminClient")

    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", Refused)
    monkeypatch.setattr(confluent_kafka, "AdminClient", Refused, raising=False)
    assert wait_for_coordinator("127.0.0.1:1", ["g"], timeout=0.5) is False


def test_no_answer_yet_then_an_answer_is_true_and_every_probe_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator that does not answer yet (COORDINATOR_NOT_AVAILABLE, a request timing out)
    is one more "not yet"; once every group's coordinator answers, True; no consumer is left open."""
    import confluent_kafka

    from practiceflow.streams import recovery

    made: list[FakeConsumer] = []

    class FakeConsumer:
        def __init__(self, conf: dict[str, object]) -> None:
            self.group, self.asked, self.closed = conf["group.id"], 0, False
            made.append(self)

        def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
            self.asked += 1
            if self.asked < 3:
                raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(confluent_kafka.KafkaError._TIMED_OUT))
            return partitions

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    assert recovery.wait_for_coordinator("127.0.0.1:1", ["g1", "g2"], timeout=10.0) is True
    assert [c.group for c in made] == ["g1", "g2"] and all(c.closed for c in made)
    assert made[0].asked >= 3 and made[1].asked == 3


def test_no_broker_is_not_yet_and_ends_in_false_not_an_exception() -> None:
    started = time.monotonic()
    assert wait_for_coordinator("127.0.0.1:1", ["g"], timeout=2.0) is False
    assert time.monotonic() - started < 15  # bounded by the timeout (+ one request), not hung


def test_a_broker_that_accepts_and_never_answers_ends_in_false_on_time() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # connections are accepted by the kernel and never answered
        started = time.monotonic()
        assert wait_for_coordinator(f"127.0.0.1:{server.getsockname()[1]}", ["g"], timeout=2.0) is False
        assert time.monotonic() - started < 15


@pytest.mark.broker
def test_a_running_broker_answers_and_the_question_joins_no_group(stack) -> None:
    assert wait_for_coordinator(stack.bootstrap, ["pf-test-coordwait"], timeout=30.0) is True
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    described = admin.describe_consumer_groups(["pf-test-coordwait"])["pf-test-coordwait"].result(30)
    # never joined: DEAD (a group joined and left would be EMPTY), no members
    assert described.state == ConsumerGroupState.DEAD and described.members == []


@pytest.mark.broker
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
        coordinator = admin.describe_consumer_groups([group])[group].result(30).coordinator.id  # asked before any kill
        for rnd in range(3):
            # the coordinator, then the others: any connection dropped mid-request will do
            victim = coordinator if rnd == 0 else cluster.nodes[rnd % len(cluster.nodes)].node_id
            askers = [
                subprocess.Popen(
                    [sys.executable, "-X", "faulthandler", "-c", ASK_FOR, cluster.bootstrap, group, "10"],
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
                try:
                    _, err = asker.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    asker.kill()  # a hung child is a failure too, and must not outlive the test
                    _, err = asker.communicate()
                if asker.returncode != 0:
                    died.append((asker.returncode, err[-400:]))
            time.sleep(3.0)  # the restarted node catches up before the next round
        assert died == []
    finally:
        cluster.stop()
