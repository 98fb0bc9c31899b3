"""Run a Pipeline's Faust app inside an existing asyncio loop (main job, tests).

``faust.Worker`` owns the process (signals, logging, loop); embedding the app in a
larger program instead needs start/stop around ``app.start()``, and a wait for the
first partition assignment so nothing is produced before the consumer listens.
"""

from __future__ import annotations

import asyncio
import time

from practiceflow.streams.app import Pipeline


async def start(pipeline: Pipeline, timeout: float = 90.0) -> None:
    await pipeline.app.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer = pipeline.app.consumer
        if (
            consumer is not None
            and consumer.assignment()
            and not pipeline.sensor.rebalancing
            and pipeline.app.rebalancing is False
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the pipeline got no partitions in time")


async def stop(pipeline: Pipeline) -> None:
    await pipeline.app.stop()
    pipeline.sink_pool.shutdown(wait=True)


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False
