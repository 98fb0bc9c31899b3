"""The one batch loop every agent runs: take a batch, handle it, or stop the worker loudly.

Every agent of the worker (normalizers, the audit chain, the workflows, the command
executors) follows the same commit rule (streams/offsets.py): a batch's outputs and table
writes are confirmed before its offsets are committed. What happens when handling a batch
fails is the other half of that rule, and it must be the same everywhere: nothing was
committed, so the agent must not carry on with the next batch (that would commit past the
failed one) nor die silently inside a live-looking process. The worker crashes instead,
and the restart -- or the worker that takes the partitions over -- handles the batch again
from the last commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from practiceflow.streams.app import Pipeline

log = logging.getLogger("practiceflow.worker")


async def run_batches(
    pipeline: Pipeline,
    stream: Any,
    handle: Callable[[list[Any]], Awaitable[Any]],
    name: str,
    *,
    batch_max: int | None = None,
    batch_seconds: float | None = None,
) -> None:
    """Feed ``stream`` to ``handle`` in batches of up to ``batch_max`` events (default
    ``worker_batch_max``) gathered for at most ``batch_seconds`` (default ``worker_batch_seconds``;
    ``request_batch_seconds`` for agents on a person-facing request's path); a failed batch stops
    the worker (``app.crash``). Only the exception's type is logged: its text can quote PHI."""
    cfg = pipeline.cfg
    within = batch_seconds or cfg.worker_batch_seconds
    # take_events is faust's Stream API; its StreamT protocol does not declare it
    async for events in stream.take_events(batch_max or cfg.worker_batch_max, within=within):
        try:
            await handle(list(events))
        except Exception as exc:
            log.critical("%s batch failed (%s); stopping the worker", name, type(exc).__name__)
            await pipeline.app.crash(exc)
            raise
