"""Run a Pipeline's Faust app inside an existing asyncio loop (main job, tests).

``faust.Worker`` owns the process (signals, logging, loop); embedding the app in a
larger program instead needs start/stop around ``app.start()``, and a wait for the
first partition assignment so nothing is produced before the consumer listens.
"""

from __future__ import annotations

import asyncio
import time

from practiceflow.streams.app import Pipeline
from practiceflow.streams.clickhouse_sink import ClickHouseSinkConsumer
from practiceflow.streams.recovery import librdkafka_settings, wait_for_coordinator

# pipeline -> its ClickHouse sink consumer (a thread beside the Faust app)
_SINKS: dict[int, ClickHouseSinkConsumer] = {}


def sink_group(pipeline: Pipeline) -> str:
    """The sink's own consumer group, next to the worker's (one sink per worker group)."""
    return f"{pipeline.app.conf.id}-clickhouse-sink"


def start_sink(
    pipeline: Pipeline, bootstrap: str, loop: asyncio.AbstractEventLoop | None = None
) -> ClickHouseSinkConsumer | None:
    """Start the ClickHouse sink consumer (a thread) for a pipeline built with ``sink=``.

    With ``loop`` (the pipeline's), the rows it writes are added to ``pipeline.counts`` as
    ``clickhouse.<table>`` on that loop (never from the sink's thread, which would race the
    agents' own updates), so ``Pipeline.sink_caught_up`` compares produced with written.
    """
    if pipeline.sink is None:
        return None

    def count_on_loop(written: dict[str, int]) -> None:
        def add() -> None:
            for table, n in written.items():
                pipeline.counts[f"clickhouse.{table}"] = pipeline.counts.get(f"clickhouse.{table}", 0) + n

        try:
            loop.call_soon_threadsafe(add)  # type: ignore[union-attr]
        except RuntimeError:  # the loop closed (shutdown): nobody is waiting for these counts
            pass

    consumer = ClickHouseSinkConsumer(
        bootstrap,
        pipeline.serde,
        pipeline.prefix,
        pipeline.sink,
        group_id=sink_group(pipeline),
        consumer_config=librdkafka_settings(pipeline.cfg, "sink-thread"),
        on_written=count_on_loop if loop is not None else None,
    )
    consumer.start()
    _SINKS[id(pipeline)] = consumer
    return consumer


async def start(pipeline: Pipeline, timeout: float = 90.0) -> None:
    groups = [pipeline.app.conf.id] + ([sink_group(pipeline)] if pipeline.sink is not None else [])
    await asyncio.get_running_loop().run_in_executor(None, wait_for_coordinator, pipeline.bootstrap, groups)
    start_sink(pipeline, ",".join(u.authority for u in pipeline.app.conf.broker), asyncio.get_running_loop())
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
    pipeline.close()
    sink = _SINKS.pop(id(pipeline), None)
    if sink is not None:
        await asyncio.get_running_loop().run_in_executor(None, sink.stop)


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False
