"""Refill request -> work item latency through the real broker, p50 / p99 at ``RATE`` requests/s.

A local stack (Kafka KRaft + registry) and one worker (``Pipeline``: normalize, patient
context, refill agents; no ClickHouse sink) in this process. First ``PATIENTS`` chart
histories go in over ``raw.hl7v2`` (the sample day's refill cases: ADT^A03 visit, ORU
labs and vitals, RDE order) and the context is allowed to catch up; then portal refill
requests are written to ``raw.portal`` at ``RATE`` per second for ``SECONDS`` seconds,
round-robin over the patients. Latency = the work item's broker timestamp on ``handoff``
minus the request's on ``raw.portal`` (both CreateTime from this machine's clock), so
it covers the portal topic, normalization, the context barrier, triage and the handoff
write, as a gateway-accepted request experiences it.

``python bench/bench_refill_latency.py`` prints JSON. Target: p99 < 250 ms at 100/s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from confluent_kafka import Consumer

try:
    from practiceflow.settings import Settings
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from practiceflow.settings import Settings  # type: ignore[no-redef]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benches' shared module, run as a script
from broker_latency import quantiles_ms, rate_and_seconds, run_on_local_stack

from practiceflow.jobs.run_file import raw_record
from practiceflow.sampleday import refills
from practiceflow.sampleday.people import make_people
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics

RATE = 100.0
SECONDS = 20.0
PATIENTS = 90
PRACTICE = "bench-refill"


def _request(n: int, mrn: str, case: int, stamp: str) -> dict:
    body = {
        "request_id": f"rfl_bench_{n:06d}",
        "submitted_at": stamp,
        "patient_id": mrn,
        "medication": {"name": refills.CASES[case][0]},
        "last_filled": "2026-10-30",
    }
    return raw_record(
        PRACTICE,
        "portal",
        json.dumps(body).encode(),
        headers={"event_type": "refill.requested"},
        message_id=f"refill.requested/{body['request_id']}",
    )


class _Watch(threading.Thread):
    """Reads ``handoff`` and ``raw.portal`` and pairs request and item timestamps by request id."""

    def __init__(self, bootstrap: str, prefix: str, serde) -> None:
        super().__init__(daemon=True)
        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            }
        )
        self.handoff, self.raw = f"{prefix}.handoff", f"{prefix}.raw.portal"
        self.c.subscribe([self.handoff, self.raw])
        self.serde = serde
        self.sent: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            msg = self.c.poll(0.2)
            if msg is None or msg.error():
                continue
            _kind, ts = msg.timestamp()
            if msg.topic() == self.raw:
                rid = msg.key().decode().rsplit("/", 1)[-1]
                self.sent[rid] = ts
            else:
                v = self.serde.decode(msg.value())
                if v.get("workflow") == "refill":
                    self.done.setdefault(str(v["subject_id"]), ts)
        self.c.close()


async def _bench(cfg: Settings, bootstrap: str, registry: str, rate: float, seconds: float) -> dict:
    create_topics(bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    pipeline = Pipeline(cfg, bootstrap, registry)
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(bootstrap, cfg.topic_partitions)
    people = make_people(PATIENTS + refills.FIRST, 3)[refills.FIRST :]
    d = date(2026, 11, 27)
    controls = iter(range(100001, 999999))
    partition = catalog.partition_for(PRACTICE, cfg.topic_partitions)

    async def send(raw: dict) -> None:
        topic = f"{cfg.topic_prefix}.raw.{raw['feed']}"
        await producer.send_async(
            topic,
            f"{raw['practice_id']}/{raw['message_id']}",
            pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
            PRACTICE,
        )

    try:
        for i, p in enumerate(people):
            for msg in refills.history(p, i % len(refills.CASES), d, controls):
                await send(raw_record(PRACTICE, "hl7v2", msg))
        assert await pipeline.contexts.caught_up(partition, timeout=300)
        watch = _Watch(bootstrap, cfg.topic_prefix, pipeline.serde)
        watch.start()
        await asyncio.sleep(3)  # the watcher's assignment
        stamp = datetime(2026, 11, 27, 7, 30, tzinfo=UTC).isoformat()
        total = int(rate * seconds)
        t0 = time.monotonic()
        for n in range(total):
            due = t0 + n / rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            i = n % len(people)
            await send(_request(n, people[i].mrn, i % len(refills.CASES), stamp))
        sent_for = time.monotonic() - t0
        for _ in range(300):  # at most a minute for the last items
            if len(watch.done) >= total:
                break
            await asyncio.sleep(0.2)
        watch.stop = True
        watch.join(5)
    finally:
        producer.close()
        await runner.stop(pipeline)
    lat = sorted(float(watch.done[r] - watch.sent[r]) for r in watch.done if r in watch.sent)
    return {
        "rate_per_second": rate,
        "requests": total,
        "sent_in_seconds": round(sent_for, 2),
        "items": len(lat),
        **quantiles_ms(lat),
        "target_p99_ms": 250,
        "counts": {k: v for k, v in pipeline.counts.items() if k.startswith("refill.")},
    }


def run(rate: float = RATE, seconds: float = SECONDS) -> dict:
    return run_on_local_stack(_bench, rate, seconds)


if __name__ == "__main__":
    print(json.dumps(run(*rate_and_seconds(RATE, SECONDS)), indent=2))
