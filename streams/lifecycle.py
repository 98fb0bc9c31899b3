"""Resources that must be released when the worker's Faust app stops.

A command executor opens an HTTP session lazily (the clearinghouse connector, the LLM
client); nothing in Faust closes it, so at exit aiohttp reported an "Unclosed client
session" for every run of the day and of the worker. Registering the close as a child
service of the app ties it to the app's own stop, the same in ``faust.Worker`` (the
production worker) and in :func:`practiceflow.streams.runner.stop` (the day, tests).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import faust
from mode import Service

log = logging.getLogger("practiceflow.worker")


def close_on_stop(app: faust.App, name: str, close: Callable[[], Awaitable[None]]) -> None:
    """Await ``close()`` when ``app`` stops (after its agents, as a child service)."""

    class _Closer(Service):  # (renaming it would break mode's per-class task registry)
        async def on_stop(self) -> None:
            try:
                await close()
            except Exception as exc:  # a failed close must not stop the rest of the shutdown
                log.warning("closing %s failed: %s", name, type(exc).__name__)

    app.service(_Closer)
