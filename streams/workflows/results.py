"""One agent on ``cmd.results`` for every workflow that reads command results.

WHY one: offsets are committed per consumer group and partition, not per agent
(``streams/offsets.py``). Two agents on ``cmd.results`` would each commit the partition's
offset as far as *they* got; after a rebalance both resume from the furthest commit, and
the slower one never sees the results in between (the fax workflow's LLM answers lost
one that way while the intake agent had committed past it). So each workflow adds a
handler (:func:`add_handler`) and this module's agent admits a batch once, hands it to
every handler in turn (each confirms its own outputs and table writes before returning,
and skips the results of other workflows), then commits. Registered after the workflow
modules that add handlers (``streams/workflows/__init__.py`` MODULES).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from practiceflow.streams.batches import run_batches
from practiceflow.streams.offsets import Committer

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.workflows.results")

Handler = Callable[[list[Any]], Awaitable[None]]


def add_handler(pipeline: Pipeline, name: str, handler: Handler) -> None:
    """``handler(admitted_events)`` will see every batch of ``cmd.results``."""
    handlers: list[tuple[str, Handler]] = pipeline.__dict__.setdefault("result_handlers", [])
    handlers.append((name, handler))


def register(pipeline: Pipeline) -> None:
    handlers: list[tuple[str, Handler]] = pipeline.__dict__.get("result_handlers", [])
    if not handlers:
        return
    topic = pipeline.topics["cmd.results"]
    committer = Committer(pipeline.app, pipeline.committed_offsets, "command-results", topic.topics)

    async def batch(events: list[Any]) -> None:
        admitted = await committer.admit(events)
        if admitted:
            for _name, handle in handlers:
                await handle(admitted)
            await committer.commit(admitted)

    async def command_results(stream: Any) -> None:
        await run_batches(pipeline, stream, batch, "command results")

    pipeline.app.agent(topic, name="command-results")(command_results)
    pipeline.source_topics.add(topic.get_topic_name())
