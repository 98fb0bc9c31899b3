"""The patient-context barrier asks the broker once per stage, not once per topic (issue 9 latency).

``PatientContexts.caught_up`` covers every feed topic (stage 1) and every context topic (stage
2) of a partition; each high-watermark read used to be one round trip per topic, one after
another (14 per refill batch). These tests run the barrier against a recording fake of the
two clients (no broker, no clock): one high-watermark request per stage for all topics and
partitions, the committed offsets in one request per poll, still waiting for the normalize
agents' commits before reading the context topics (the guarantee), and the leader-moving
retry of ``streams/positions.py`` kept for the batched read.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.types import TP

from practiceflow.schemas import headers
from practiceflow.streams import positions
from practiceflow.streams.offsets import OffsetLedger
from practiceflow.streams.workflows.context import BARRIER_FEEDS, CONTEXT_TOPICS, PatientContexts, Watermarks, raw_upto

PREFIX = "t"
RAW = [f"{PREFIX}.raw.{feed}" for feed in BARRIER_FEEDS]
CONTEXT = [f"{PREFIX}.{suffix}" for suffix in CONTEXT_TOPICS]


class Broker:
    """Both clients of ``Watermarks`` (consumer + admin): answers from dicts and logs each request."""

    def __init__(self, high: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]) -> None:
        self.high, self.committed_at = high, committed
        self.requests: list[tuple[str, frozenset[tuple[str, int]]]] = []
        self.on_committed = lambda: None  # a normalize agent committing between polls

    # the old per-partition read (confluent Consumer)
    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        self.requests.append(("high", frozenset({(tp.topic, tp.partition)})))
        return 0, self.high.get((tp.topic, tp.partition), 0)

    # the batched read (confluent AdminClient)
    def list_offsets(self, specs, **kwargs):
        self.requests.append(("high", frozenset((tp.topic, tp.partition) for tp in specs)))
        out = {}
        for tp in specs:
            f: Future = Future()
            f.set_result(SimpleNamespace(offset=self.high.get((tp.topic, tp.partition), 0)))
            out[tp] = f
        return out

    def committed(self, tps, timeout=None):
        self.requests.append(("committed", frozenset((tp.topic, tp.partition) for tp in tps)))
        self.on_committed()
        return [
            TopicPartition(tp.topic, tp.partition, self.committed_at.get((tp.topic, tp.partition), -1001)) for tp in tps
        ]

    def highs(self) -> list[frozenset[tuple[str, int]]]:
        return [tps for kind, tps in self.requests if kind == "high"]


def _contexts(broker: Broker) -> PatientContexts:
    wm = Watermarks.__new__(Watermarks)
    wm._consumer = wm._admin = broker  # type: ignore[assignment]
    wm._pool = ThreadPoolExecutor(max_workers=1)
    ctx = PatientContexts.__new__(PatientContexts)
    ctx.p = SimpleNamespace(prefix=PREFIX)  # type: ignore[assignment]
    ctx.topic_names = list(CONTEXT)
    ctx.committer = SimpleNamespace(ledger=OffsetLedger())  # type: ignore[assignment]
    ctx.watermarks = wm
    return ctx


def _all(partitions, topics, offset):
    return {(t, p): offset for p in partitions for t in topics}


def test_one_high_watermark_request_per_stage_for_all_topics_of_a_partition():
    marks = _all([2], RAW + CONTEXT, 5)
    broker = Broker(marks, dict(marks))
    assert asyncio.run(_contexts(broker).caught_up(2, timeout=60))
    assert broker.highs() == [frozenset(_all([2], RAW, 0)), frozenset(_all([2], CONTEXT, 0))]
    assert [kind for kind, _ in broker.requests] == ["high", "committed", "high", "committed"]


def test_one_evaluation_covers_every_partition_of_a_batch():
    marks = _all([0, 3, 5], RAW + CONTEXT, 7)
    broker = Broker(marks, dict(marks))
    assert asyncio.run(_contexts(broker).behind({5, 0, 3}, timeout=60)) == set()
    assert broker.highs() == [frozenset(_all([0, 3, 5], RAW, 0)), frozenset(_all([0, 3, 5], CONTEXT, 0))]
    assert len(broker.requests) == 4


def test_context_topics_are_read_only_after_the_normalize_agents_committed_the_raw_high_watermarks():
    marks = _all([1], RAW + CONTEXT, 4)
    committed = dict(marks)
    committed[(RAW[0], 1)] = 1  # hl7v2: three records accepted, not yet normalized
    broker = Broker(marks, committed)
    polls = []

    def normalize_commits_one_more():
        polls.append(1)
        if committed[(RAW[0], 1)] < 4:
            committed[(RAW[0], 1)] += 1

    broker.on_committed = normalize_commits_one_more
    assert asyncio.run(_contexts(broker).caught_up(1, timeout=600))
    kinds = [kind for kind, _ in broker.requests]
    # stage 1 polled until the commit reached the high watermark read at the call; only then
    # were the context topics' high watermarks read (their records exist by then)
    assert kinds[0] == "high" and kinds.index("high", 1) > 3 and committed[(RAW[0], 1)] == 4
    assert broker.highs()[1] == frozenset(_all([1], CONTEXT, 0))
    # later polls ask only for the partitions still behind
    assert broker.requests[2] == ("committed", frozenset({(RAW[0], 1)}))


def test_the_partitions_still_behind_at_the_deadline_are_named():
    marks = _all([0, 3], RAW + CONTEXT, 4)
    committed = dict(marks)
    committed[(RAW[1], 3)] = 2  # partition 3's fhir feed is not normalized yet
    broker = Broker(marks, committed)
    # a deadline already passed: the barrier checks once and never waits
    assert asyncio.run(_contexts(broker).behind([0, 3], timeout=-1)) == {3}
    assert broker.highs()[1] == frozenset(_all([0], CONTEXT, 0))


class FlakyAdmin:
    def __init__(self, failing: set[tuple[str, int]], code: int) -> None:
        self.failing, self.code, self.calls = failing, code, []

    def list_offsets(self, specs, **kwargs):
        self.calls.append(sorted((tp.topic, tp.partition) for tp in specs))
        out = {}
        for tp in specs:
            f: Future = Future()
            if (tp.topic, tp.partition) in self.failing and len(self.calls) == 1:
                f.set_exception(KafkaException(KafkaError(self.code)))
            else:
                f.set_result(SimpleNamespace(offset=10 + tp.partition))
            out[tp] = f
        return out


def test_a_partition_whose_leader_moves_is_asked_again_alone(monkeypatch):
    monkeypatch.setattr(positions.time, "sleep", lambda s: None)
    admin = FlakyAdmin({("a", 1)}, KafkaError.NOT_LEADER_FOR_PARTITION)
    got = positions.high_watermarks(admin, [("a", 0), ("a", 1), ("b", 2)], 1.0)  # type: ignore[arg-type]
    assert got == {("a", 0): 10, ("a", 1): 11, ("b", 2): 12}
    assert admin.calls == [[("a", 0), ("a", 1), ("b", 2)], [("a", 1)]]


def test_other_errors_of_the_batched_read_are_raised_at_once():
    admin = FlakyAdmin({("a", 1)}, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        positions.high_watermarks(admin, [("a", 0), ("a", 1)], 1.0)  # type: ignore[arg-type]
    assert len(admin.calls) == 1


@pytest.mark.broker
def test_the_batched_read_answers_what_the_per_partition_read_does(stack):
    """Against the real broker: the same high watermarks as ``get_watermark_offsets``, an empty
    partition included (0: the barrier skips it)."""
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    topic = f"barrier-{uuid.uuid4().hex[:8]}"
    for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        fut.result(30)
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    for partition, n in ((0, 3), (2, 5)):
        for i in range(n):
            producer.produce(topic, value=f"{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    got = positions.high_watermarks(admin, [(topic, p) for p in range(3)], 30)
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"g-{topic}"})
    try:
        one_by_one = {(topic, p): positions.watermarks(consumer, TopicPartition(topic, p), 30)[1] for p in range(3)}
    finally:
        consumer.close()
    assert got == one_by_one == {(topic, 0): 3, (topic, 1): 0, (topic, 2): 5}


def test_a_feed_normalized_in_this_process_is_read_from_its_agents_ledger_not_the_broker():
    marks = _all([1], RAW + CONTEXT, 4)
    committed = dict(marks)
    committed[(RAW[0], 1)] = 1  # the broker's commit of hl7v2 lags: the commit round trip is pending
    broker = Broker(marks, committed)
    ctx = _contexts(broker)
    hl7 = SimpleNamespace(ledger=OffsetLedger())
    hl7.ledger.start(TP(RAW[0], 1), 1)
    ctx.p.feed_committers = {RAW[0]: hl7}  # type: ignore[attr-defined]

    async def run() -> bool:
        async def normalize() -> None:  # the agent confirms offsets 1..3 (outputs in Kafka)
            for off in (1, 2, 3):
                await asyncio.sleep(0)
                hl7.ledger.done(TP(RAW[0], 1), off)

        task = asyncio.ensure_future(normalize())
        ok = await ctx.caught_up(1, timeout=30)
        await task
        return ok

    assert asyncio.run(run())
    assert hl7.ledger.expected(TP(RAW[0], 1)) == 4 and committed[(RAW[0], 1)] == 1
    # the hl7v2 partition never went to the broker's committed offsets; the other feeds did, once
    asked = [tps for kind, tps in broker.requests if kind == "committed"]
    assert asked[0] == frozenset(_all([1], RAW[1:], 0)) and all((RAW[0], 1) not in tps for tps in asked)


def test_a_ledger_that_does_not_know_the_partition_falls_back_to_the_committed_offset():
    marks = _all([1], RAW + CONTEXT, 4)
    broker = Broker(marks, dict(marks))
    ctx = _contexts(broker)
    ctx.p.feed_committers = {RAW[0]: SimpleNamespace(ledger=OffsetLedger())}  # type: ignore[attr-defined]
    assert asyncio.run(ctx.caught_up(1, timeout=60))
    assert [kind for kind, _ in broker.requests] == ["high", "committed", "high", "committed"]


def _event(headers, partition=2):
    return SimpleNamespace(message=SimpleNamespace(headers=headers, partition=partition))


def test_raw_upto_reads_the_normalizers_source_header_per_partition():
    portal = f"{PREFIX}.raw.portal"
    events = [
        _event(headers.source_header(portal, 2, 40)),
        _event(headers.source_header(portal, 2, 17)),
        _event({headers.SOURCE_HEADER: f"{portal}:5:3".encode()}, partition=5),  # Faust may hand a mapping
    ]
    assert raw_upto(events) == {TP(portal, 2): 41, TP(portal, 5): 4}


def test_a_source_on_another_partition_number_gives_no_exact_target():
    """Raw and normalized partitions are the same number for a practice; a header saying
    otherwise (topics partitioned differently) must not lend its target to another partition
    whose own requests are mixed (review s22 N6)."""
    portal = f"{PREFIX}.raw.portal"
    events = [_event(headers.source_header(portal, 5, 9), partition=2), _event(None, partition=5)]
    assert raw_upto(events) == {}


@pytest.mark.parametrize(
    "other",
    [
        [("other", b"x")],  # written before the header existed (or by the fax LLM step)
        [(headers.SOURCE_HEADER, b"garbage")],
        None,
        headers.source_header(f"{PREFIX}.retry.portal", 2, 3),  # a retried request
        headers.source_header(f"{PREFIX}.raw.fhir", 2, 9),  # a request from another feed
    ],
)
def test_a_partition_with_one_request_not_from_the_same_raw_partition_gets_no_exact_target(other):
    """That request needs every feed's high watermark at the call, its own included: an exact
    target taken from its batch-mates would cut what it must wait for (review s22 S1)."""
    portal = f"{PREFIX}.raw.portal"
    events = [
        _event(headers.source_header(portal, 2, 40)),
        _event(other),
        _event(headers.source_header(portal, 5, 3), 5),
    ]
    assert raw_upto(events) == {TP(portal, 5): 4}
    marks = _all([2], RAW + CONTEXT, 4)
    marks[(portal, 2)] = 90
    committed = dict(marks)
    committed[(portal, 2)] = 41
    assert asyncio.run(_contexts(Broker(marks, committed)).behind([2], timeout=-1, upto=raw_upto(events[:2]))) == {2}


def test_the_requests_own_feed_is_waited_for_only_up_to_the_requests_not_its_moving_high_watermark():
    """Requests keep arriving on raw.portal while a batch is handled; with the high watermark as
    the target, each batch waited for the next requests' normalization too (the refill p99).
    With ``upto`` the portal partition is not even asked for its high watermark, and a
    normalize agent that reached the batch's own requests is enough."""
    portal = TP(f"{PREFIX}.raw.portal", 1)
    marks = _all([1], RAW + CONTEXT, 4)
    marks[(portal.topic, 1)] = 90  # 89 requests accepted by now
    committed = dict(marks)
    committed[(portal.topic, 1)] = 31  # normalized up to 30: the batch's requests (..30) included
    broker = Broker(marks, committed)
    assert asyncio.run(_contexts(broker).behind([1], timeout=-1, upto={portal: 31})) == set()
    assert (portal.topic, 1) not in broker.highs()[0]
    # without it the same state is behind (the old target)
    assert asyncio.run(_contexts(Broker(marks, dict(committed))).behind([1], timeout=-1)) == {1}


def test_an_upto_for_a_topic_the_barrier_does_not_cover_changes_nothing():
    retry = TP(f"{PREFIX}.retry.portal", 1)  # a retried request: its offset says nothing of raw.portal
    marks = _all([1], RAW + CONTEXT, 4)
    broker = Broker(marks, dict(marks))
    assert asyncio.run(_contexts(broker).behind([1], timeout=60, upto={retry: 2})) == set()
    assert broker.highs()[0] == frozenset(_all([1], RAW, 0))
