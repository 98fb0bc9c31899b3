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


def test_the_worker_wires_the_request_window_to_the_portal_normalizer_and_the_refill_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The registered agents themselves (review s22 N7): the portal normalizer and the refill
    agent get ``request_batch_seconds``, every other feed ``worker_batch_seconds``. No broker:
    the Pipeline's clients are built against a closed port and never asked for anything."""
    from practiceflow.settings import Settings
    from practiceflow.streams import app as app_module
    from practiceflow.streams.normalize_agent import Normalizer
    from practiceflow.streams.workflows import refill as refill_module

    asked: dict[str, float | None] = {}

    async def normalizer_run(self: Any, stream: Any, committer: Any, **kw: Any) -> None:
        asked[stream] = kw.get("batch_seconds")

    async def refill_batches(pipeline: Any, stream: Any, handle: Any, name: str, **kw: Any) -> None:
        asked[stream] = kw.get("batch_seconds")

    monkeypatch.setattr(Normalizer, "run", normalizer_run)
    monkeypatch.setattr(refill_module, "run_batches", refill_batches)
    cfg = Settings(request_batch_seconds=0.013, worker_batch_seconds=0.07, state_dir=tmp_path)
    pipeline = app_module.Pipeline(cfg, "127.0.0.1:1", "http://127.0.0.1:1")
    try:
        for name, agent in pipeline.app.agents.items():
            if name.startswith("normalize-") or name == "refill-triage":
                asyncio.run(agent.fun(name))
    finally:
        pipeline.close()
    prefix = cfg.topic_prefix
    assert asked[f"normalize-{prefix}.raw.portal"] == 0.013
    assert asked["refill-triage"] == 0.013
    for feed in ("hl7v2", "fhir", "fax", "x12"):
        assert asked[f"normalize-{prefix}.raw.{feed}"] == 0.07, feed
