"""The eligibility executor after a crash between publishing a result and recording it ``done``.

No broker: the executor's batch runs against in-memory stand-ins for its table, its topics
and its committer, so the crash window (a ``sending`` mark with the result already on
``cmd.results``) is set up exactly. The real consumer lookup is exercised by the broker
tests in test_intake_eligibility_e2e.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from practiceflow.settings import Settings
from practiceflow.streams.commands.eligibility import EligibilityExecutor, points_at_local_simulator
from practiceflow.streams.offsets import Outbox


class _Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, Any]]] = []

    async def send(self, *, key: bytes, value: dict[str, Any], partition: int) -> asyncio.Future[None]:
        self.sent.append((key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class _Table:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def send_changelog(self, partition: int, key: str, value: Any, **_: Any) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class _Committer:
    def __init__(self) -> None:
        self.committed: list[Any] = []

    async def admit(self, events: list[Any]) -> list[Any]:
        return events

    async def commit(self, events: list[Any]) -> None:
        self.committed += events


class _NoClient:
    async def check(self, *_: Any) -> Any:
        raise AssertionError("a replayed command must never send its 270 again")


CMD = {
    "practice_id": "clinic-a",
    "command_id": "eligibility:abc",
    "kind": "eligibility",
    "workflow": "intake",
    "payload_type": "x12.270",
    "payload": "ISA*...",
    "params": {"payer_id": "60054"},
}
KEY = "clinic-a/eligibility:abc"
PUBLISHED = {
    "practice_id": "clinic-a",
    "command_id": "eligibility:abc",
    "kind": "eligibility",
    "workflow": "intake",
    "outcome": "ok",
    "reason": None,
    "payload_type": "x12.271",
    "payload": "ISA*the real 271",
    "attempts": 1,
    "latency_ms": 12.0,
    "completed_at": 1,
    "params": {"payer_id": "60054"},
}


def _executor(table: dict[str, Any], on_results: dict[str, dict[str, Any]]) -> tuple[EligibilityExecutor, _Topic]:
    results = _Topic()
    counts: dict[str, int] = {}
    lookups: list[set[str]] = []

    async def lookup(keys: set[str]) -> dict[str, dict[str, Any]]:
        lookups.append(keys)
        return {k: v for k, v in on_results.items() if k in keys}

    ex = EligibilityExecutor.__new__(EligibilityExecutor)
    ex.p = SimpleNamespace(  # type: ignore[assignment]
        partitions=4,
        topics={"cmd.results": results},
        _count=lambda name, n=1: counts.__setitem__(name, counts.get(name, 0) + n),
        counts=counts,
        outbox=Outbox,  # without a producer: the table's send_changelog above
    )
    ex._client = _NoClient()  # type: ignore[assignment]
    ex._lookup = lookup
    ex.sent = _Table(table)
    ex.lookups = lookups  # type: ignore[attr-defined]
    return ex, results


class _Event:  # a class (not SimpleNamespace): in_event() holds a weak reference to it
    def __init__(self, offset: int) -> None:
        self.value = dict(CMD)
        self.message = SimpleNamespace(partition=0, offset=offset, tp=("cmd", 0))


def _event(offset: int) -> Any:
    return _Event(offset)


def test_a_result_already_published_is_the_answer_after_a_crash_not_interrupted() -> None:
    table: dict[str, Any] = {KEY: {"state": "sending"}}  # crashed after outbox.confirm(), before _mark(done)
    ex, results = _executor(table, {KEY: PUBLISHED})
    asyncio.run(ex.process_batch([_event(7)], _Committer()))
    assert [v for _, v in results.sent] == [PUBLISHED]  # the same result again, not a contradicting "failed"
    assert table[KEY] == {"state": "done", "result": PUBLISHED}
    assert ex.p.counts["eligibility.recovered"] == 1  # type: ignore[attr-defined]


def test_an_interrupted_answer_is_recorded_done_and_repeated_unchanged() -> None:
    table: dict[str, Any] = {KEY: {"state": "sending"}}  # crashed while the 270 was out: no result anywhere
    ex, results = _executor(table, {})
    committer = _Committer()
    asyncio.run(ex.process_batch([_event(7)], committer))
    ((_, first),) = results.sent
    assert first["outcome"] == "failed" and first["reason"].startswith("interrupted")
    assert table[KEY] == {"state": "done", "result": first}
    # a second replay: answered from the table, the same answer, no new lookup
    asyncio.run(ex.process_batch([_event(7)], committer))
    assert [v for _, v in results.sent] == [first, first]
    assert len(ex.lookups) == 1  # type: ignore[attr-defined]
    assert len(committer.committed) == 2


def test_the_simulator_starts_only_when_the_settings_point_at_it() -> None:
    assert points_at_local_simulator(Settings(clearinghouse="simulator"))
    assert points_at_local_simulator(Settings(clearinghouse="simulator", clearinghouse_url="http://127.0.0.1:8095/x"))
    assert not points_at_local_simulator(Settings())  # the default: no clearinghouse configured
    assert not points_at_local_simulator(Settings(clearinghouse="core", clearinghouse_url="https://ch.example/core"))
    assert not points_at_local_simulator(Settings(clearinghouse="simulator", clearinghouse_url="https://ch.example/"))
    assert not points_at_local_simulator(Settings(clearinghouse="folder"))
