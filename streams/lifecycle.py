"""Resources that must be released when the worker's Faust app stops.

A command executor opens an HTTP session lazily (the clearinghouse connector, the LLM
client); nothing in Faust closes it, so at exit aiohttp reported an "Unclosed client
session" for every run of the day and of the worker. Registering the close as a child
service of the app ties it to the app's own stop, the same in ``faust.Worker`` (the
production worker) and in :func:`practiceflow.streams.runner.stop` (the day, tests).
"""

from __future__ import annotations

import gc
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


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Move everything loaded at start-up out of the cyclic collector's reach, once per process.

    A worker loads large, never-freed reference data before it joins its group: the
    ICD-10-CM code set (~600,000 objects), rule and drug tables, the fax classifier. Faust's
    RocksDB store calls ``gc.collect()`` for every table on every rebalance, and a full
    collection over that heap took ~0.2 CPU-s: with a dozen tables, seconds of a blocked
    event loop per rebalance, enough on a busy machine to miss heartbeats, be thrown out of
    the group and rebalance again (measured: a worker that never settled). ``gc.freeze()``
    leaves those objects to reference counting alone, so a collection scans only what the
    worker allocates while it runs. Once per process: a test session builds many pipelines,
    and objects frozen later could not be collected when they became garbage."""
    global _heap_frozen
    if _heap_frozen:
        return
    gc.collect()  # what is garbage already goes now, not into the frozen generation
    gc.freeze()
    _heap_frozen = True
