"""The tail probe (streams/offsets.py Committer.probe_tails): a message fetched and never
handed to its agent, at the tail of a partition that receives nothing new, is still processed.

This is how the last fax of a day was lost in CI (test_day_crash, stop 17): Faust skips a
message of an older consumer generation, and its re-fetch after the rebalance's seek can be
dropped as "already read"; the gap check needs a later message, which a quiet feed never sends.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from practiceflow.jobs.run_file import raw_record
from practiceflow.streams import offsets
from practiceflow.streams.offsets import Committer
from tests.fixtures import oru_r01
from tests.streams.test_pipeline import _run


class _Consumer:
    def __init__(self, highs: dict[TP, int]) -> None:
        self.highs = highs
        self.seeks: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self.highs)

    def highwater(self, tp: TP) -> int | None:
        return self.highs.get(tp)

    async def seek_wait(self, positions: dict[TP, int]) -> None:
        self.seeks.append(dict(positions))


class _Offsets:
    def __init__(self, committed: dict[TP, int]) -> None:
        self.committed = committed
        self.committers: list[Committer] = []

    async def read(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.committed[tp] for tp in tps}


def _committer(highs: dict[TP, int], committed: dict[TP, int], *, flowing: bool = True) -> tuple[Committer, _Consumer]:
    consumer = _Consumer(highs)
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=1,
        flow_control=SimpleNamespace(is_active=lambda: flowing),
    )
    c = Committer(app, _Offsets(committed), "t", {"raw"})  # type: ignore[arg-type]
    c._last_taken -= offsets.TAIL_IDLE_SECONDS + 1  # idle long enough
    return c, consumer


def test_an_idle_partition_with_fetched_messages_left_is_sought_back_to_its_committed_offset():
    tail, done, other = TP("raw", 0), TP("raw", 1), TP("other", 0)
    c, consumer = _committer({tail: 10, done: 5, other: 9}, {tail: 7, done: 5, other: 0})
    assert asyncio.run(c.probe_tails()) == [tail]
    assert consumer.seeks == [{tail: 7}]  # not `done` (nothing left), not `other` (another agent's topic)
    assert c.ledger.expected(tail) == 7


def test_the_probe_waits_while_the_agent_is_busy_or_was_given_a_batch_lately_or_faust_is_rebalancing():
    tp = TP("raw", 0)
    c, consumer = _committer({tp: 10}, {tp: 7})
    c._busy = True
    assert asyncio.run(c.probe_tails()) == []
    c._busy = False
    c._last_taken = time.monotonic()
    assert asyncio.run(c.probe_tails()) == []
    c2, consumer2 = _committer({tp: 10}, {tp: 7}, flowing=False)
    assert asyncio.run(c2.probe_tails()) == []
    assert consumer.seeks == consumer2.seeks == []


def test_a_tail_that_nothing_can_fill_is_sought_a_few_times_then_left_until_the_log_moves():
    tp = TP("raw", 0)
    c, consumer = _committer({tp: 10}, {tp: 7})
    for _ in range(offsets.TAIL_TRIES + 2):
        asyncio.run(c.probe_tails())
    assert len(consumer.seeks) == offsets.TAIL_TRIES
    consumer.highs[tp] = 11  # a new message: worth seeking again
    asyncio.run(c.probe_tails())
    assert len(consumer.seeks) == offsets.TAIL_TRIES + 1


@pytest.mark.broker
def test_a_skipped_last_message_on_a_quiet_partition_is_delivered_again_and_processed(cfg, stack, monkeypatch):
    """Through the real broker and Faust: the agent is never handed the partition's last
    message the first time (as when Faust skips it across a rebalance); nothing else is sent.
    Without the probe the worker waits for ever (the wait below times out)."""
    monkeypatch.setattr(offsets, "TAIL_PROBE_SECONDS", 0.5)
    monkeypatch.setattr(offsets, "TAIL_IDLE_SECONDS", 1.0)
    raws = [raw_record("clinic-a", "hl7v2", oru_r01(control_id=f"TAIL{i}")) for i in range(3)]
    last = raws[-1]["message_id"]
    skipped: list[int] = []
    admit = Committer.admit

    async def skipping_admit(self: Committer, events: list[Any]) -> list[Any]:
        if self.name.endswith("raw.hl7v2") and not skipped:
            for ev in events:
                if ev.value["message_id"] == last:
                    skipped.append(ev.message.offset)
            events = [ev for ev in events if ev.value["message_id"] != last]
        return await admit(self, events)

    monkeypatch.setattr(Committer, "admit", skipping_admit)
    p = asyncio.run(_run(cfg, stack, raws, lambda p: p.counts.get("hl7v2.normalized", 0) >= 3))
    assert skipped, "the last message was never delivered to the agent at all"
    assert p.counts["hl7v2.normalized"] == 3
    assert not p.counts.get("hl7v2.duplicate")


@pytest.mark.broker
def test_every_agent_committer_of_the_worker_names_its_topics(cfg, stack):
    """A committer without topics is never probed: each agent must pass its topic's names."""
    from practiceflow.streams.app import Pipeline

    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)  # built, never started
    try:
        committers = pipeline.committed_offsets.committers
        assert len(committers) >= 15, [c.name for c in committers]
        assert [c.name for c in committers if not c.topics] == []
        assert all(t.startswith(f"{cfg.topic_prefix}.") for c in committers for t in c.topics)
    finally:
        pipeline.close()
