"""``practiceflow run-file``: one file through the whole pipeline, end to end.

Publishes the file's raw bytes to its feed's raw topic (acks=all), runs the Faust
pipeline in-process until the message has been normalized (or dead-lettered), its
handoff items written and the ClickHouse rows landed, then prints what went where.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from practiceflow.processors.base import content_id
from practiceflow.settings import Settings
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.clock import now_ms
from practiceflow.streams.gateways.base import CONTENT_TYPES
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics


@dataclass
class RunReport:
    counts: dict[str, int] = field(default_factory=dict)
    clickhouse: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_message_seconds: float | None = None


def raw_record(
    practice_id: str, feed: str, payload: bytes, headers: dict[str, str] | None = None, message_id: str | None = None
) -> dict:
    return {
        "practice_id": practice_id,
        "feed": feed,
        "message_id": message_id or content_id(payload),
        "received_at": now_ms(),
        "content_type": CONTENT_TYPES.get(feed, "application/octet-stream"),
        "payload": payload,
        "headers": dict(headers or {}),
    }


async def _run(
    cfg: Settings, bootstrap: str, registry_url: str, files: list[tuple[str, Path]], practice_id: str, timeout: float
) -> RunReport:
    t0 = time.monotonic()
    report = RunReport()
    create_topics(bootstrap, cfg.topic_prefix, cfg.topic_partitions, cfg.topic_replication)
    sink = ClickHouseSink.from_settings(cfg)
    pipeline = Pipeline(
        cfg, bootstrap, registry_url, app_id=f"{cfg.consumer_group}-run-{uuid.uuid4().hex[:8]}", sink=sink
    )
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(bootstrap, cfg.topic_partitions)
    try:
        for feed, path in files:
            raw = raw_record(practice_id, feed, path.read_bytes())
            topic = catalog.raw_topic(feed).name(cfg.topic_prefix)
            await producer.send_async(
                topic,
                f"{practice_id}/{raw['message_id']}",
                pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
                practice_id,
            )

        await runner.wait_for(lambda: pipeline.handled() >= len(files), timeout)
        report.first_message_seconds = round(time.monotonic() - t0, 2)
        await runner.wait_for(pipeline.sink_caught_up, 30)  # let the sink agent drain its last batch
    finally:
        producer.close()
        await runner.stop(pipeline)
    report.counts = dict(pipeline.counts)
    report.clickhouse = {t: n for t, n in pipeline.counts.items() if t.startswith("clickhouse.")}
    report.seconds = round(time.monotonic() - t0, 2)
    sink.close()
    return report


def run_files(
    cfg: Settings,
    bootstrap: str,
    registry_url: str,
    files: list[tuple[str, Path]],
    practice_id: str,
    timeout: float = 120.0,
) -> RunReport:
    return asyncio.run(_run(cfg, bootstrap, registry_url, files, practice_id, timeout))
