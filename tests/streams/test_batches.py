"""The shared batch loop (streams/batches.py): a failed batch stops the worker, nothing after it runs.

No broker: a stand-in stream yields batches as Faust's ``take_events`` does, and a stand-in
app records ``crash``. The rule under test is what keeps "nothing is lost" true for every agent:
a batch whose handling failed was not committed, so the loop must not go on to the next
batch (whose commit would pass the failed one) -- the worker crashes and the restart handles
the batch again.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from practiceflow.streams.batches import run_batches


class _Stream:
    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches
        self.asked: list[tuple[int, float]] = []

    async def take_events(self, n: int, within: float) -> Any:
        self.asked.append((n, within))
        for b in self.batches:
            yield b


def _pipeline() -> Any:
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    cfg = SimpleNamespace(worker_batch_max=7, worker_batch_seconds=0.25)
    return SimpleNamespace(cfg=cfg, app=SimpleNamespace(crash=crash), crashed=crashed)


def test_every_batch_is_handled_in_order_with_the_configured_size() -> None:
    p, stream, seen = _pipeline(), _Stream([[1, 2], [3], [4, 5, 6]]), []

    async def handle(events: list[int]) -> None:
        seen.append(events)

    asyncio.run(run_batches(p, stream, handle, "test"))
    assert seen == [[1, 2], [3], [4, 5, 6]]
    assert stream.asked == [(7, 0.25)]
    assert p.crashed == []


def test_an_agent_on_a_request_path_asks_for_its_own_batch_window() -> None:
    """The portal normalizer and the refill agent pass ``request_batch_seconds``; the rest keep
    ``worker_batch_seconds`` (shorter batches cost bulk throughput, bench/e2e_notes.md)."""
    p, stream = _pipeline(), _Stream([[1]])

    async def handle(events: list[int]) -> None:
        return None

    asyncio.run(run_batches(p, stream, handle, "test", batch_seconds=0.02))
    assert stream.asked == [(7, 0.02)]


def test_a_failed_batch_crashes_the_worker_and_no_later_batch_runs(caplog: pytest.LogCaptureFixture) -> None:
    p, stream, seen = _pipeline(), _Stream([[1], [2], [3]]), []

    async def handle(events: list[int]) -> None:
        if events == [2]:
            raise ValueError("patient Jane Doe, DOB 1970-01-01")  # an error text may quote PHI
        seen.append(events)

    with pytest.raises(ValueError):
        asyncio.run(run_batches(p, stream, handle, "test", batch_max=3))
    assert seen == [[1]]  # batch [3] was never handled: its commit would have passed the failed batch
    assert len(p.crashed) == 1 and isinstance(p.crashed[0], ValueError)
    assert stream.asked == [(3, 0.25)]
    assert "test batch failed (ValueError)" in caplog.text
    assert "Jane Doe" not in caplog.text  # only the exception's type is logged
