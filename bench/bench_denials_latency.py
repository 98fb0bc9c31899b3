"""835 -> denial work item latency through the real broker (issue 11), p50 / p99.

A local stack (Kafka KRaft + registry) and one worker (``Pipeline``: normalize and the denial
agent among the rest; no ClickHouse sink) in this process. First the practice's own 837P
claims go in over ``raw.x12`` (``CLAIMS`` of them, one batch file, as the day job sends
them) and the denial agent stores each; then two measurements:

* **steady**: single-claim 835s arrive at ``RATE`` files per second for ``SECONDS`` seconds,
  each denying its claim (a CARC from the sample day's denial outcomes). Latency = the work
  item's broker timestamp on ``handoff`` minus the 835's on ``raw.x12`` (CreateTime from this
  machine's clock), paired by the interchange control number in the item's ``source.message_id``: it covers the raw topic,
  X12 normalization, the denial step (categories, ledger, corrected-claim or appeal drafts)
  and the handoff write, as a clearinghouse file the gateway accepted experiences it.
* **batch**: one 835 that adjudicates ``BATCH_CLAIMS`` claims at once (a payer's weekly
  remittance), every one denied: the time to its first and its last work item.

``python bench/bench_denials_latency.py [--rate R] [--seconds S]`` prints JSON. The
in-process path alone (no broker) is ``bench/bench_denials.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
import uuid
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
from practiceflow.sampleday import x12 as sample_x12
from practiceflow.sampleday.people import make_people
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics

RATE = 10.0
SECONDS = 20.0
BATCH_CLAIMS = 200
PRACTICE = "bench-denials"
DATE = "20261125"
STEADY_IC = 100  # the steady files' interchange control numbers: 100, 101, ...
BATCH_IC = 99_000
BATCH_ID = f"835-{BATCH_IC}"
DENIED = [o for o in sample_x12.OUTCOMES if o[4] == "4"]  # the outcomes that deny the claim


class _Denying(random.Random):
    """The sample day's 835 writer draws an outcome per claim; here every claim is denied."""

    def choice(self, seq):  # type: ignore[override]
        return super().choice(DENIED) if seq is sample_x12.OUTCOMES else super().choice(seq)


class _Watch(threading.Thread):
    """Reads ``raw.x12`` and ``handoff``: the 835's timestamp per message id, and the first and
    last denial item's timestamp per message id."""

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
        self.handoff, self.raw = f"{prefix}.handoff", f"{prefix}.raw.x12"
        self.c.subscribe([self.handoff, self.raw])
        self.serde = serde
        self.sent: dict[str, int] = {}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            msg = self.c.poll(0.2)
            if msg is None or msg.error():
                continue
            _kind, ts = msg.timestamp()
            if msg.topic() == self.raw:
                self.sent[msg.key().decode().split("/", 1)[1]] = ts  # <practice>/<message id>
                continue
            v = self.serde.decode(msg.value())
            if v.get("workflow") != "denials" or int(v.get("revision", 1)) != 1:
                continue
            # source.message_id is <content id>/<ISA13>/<GS06>/<ST02> (processors/x12/normalize.py):
            # each 835 here has its own interchange control number, and its message id names it
            parts = str((v.get("source") or {}).get("message_id") or "").split("/")
            mid = f"835-{int(parts[1])}" if len(parts) == 4 and parts[1].isdigit() else ""
            self.first.setdefault(mid, ts)
            self.last[mid] = ts
            self.items[mid] = self.items.get(mid, 0) + 1
        self.c.close()


async def _bench(cfg: Settings, bootstrap: str, registry: str, rate: float, seconds: float) -> dict:
    create_topics(bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    pipeline = Pipeline(cfg, bootstrap, registry)
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(bootstrap, cfg.topic_partitions)
    topic = f"{cfg.topic_prefix}.raw.x12"
    steady_n = int(rate * seconds)
    people = make_people(steady_n + BATCH_CLAIMS, 7)
    claims = [(f"BCLM{n:06d}", p, 120.0 + n % 50, DATE) for n, p in enumerate(people)]
    rng = _Denying(11)

    async def send(payload: str, message_id: str) -> None:
        raw = raw_record(PRACTICE, "x12", payload.encode(), message_id=message_id)
        await producer.send_async(
            topic, f"{PRACTICE}/{message_id}", pipeline.serde.encode(f"{topic}-value", "RawMessage", raw), PRACTICE
        )

    try:
        await send(sample_x12.claims_837(claims, 1, DATE), "837/all")
        ok = await runner.wait_for(lambda: pipeline.counts.get("denials.claims_stored", 0) >= len(claims), 300)
        assert ok, pipeline.counts
        watch = _Watch(bootstrap, cfg.topic_prefix, pipeline.serde)
        watch.start()
        await asyncio.sleep(3)  # the watcher's assignment
        t0 = time.monotonic()
        for n in range(steady_n):
            due = t0 + n / rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            payload, _truth = sample_x12.remittance_835([claims[n]], STEADY_IC + n, DATE, rng)
            await send(payload, f"835-{STEADY_IC + n}")
        sent_for = time.monotonic() - t0
        for _ in range(300):  # at most a minute for the last items
            if sum(1 for m in watch.first if m != BATCH_ID) >= steady_n:
                break
            await asyncio.sleep(0.2)
        payload, _truth = sample_x12.remittance_835(claims[steady_n:], BATCH_IC, DATE, rng)
        await send(payload, BATCH_ID)
        for _ in range(900):  # at most three minutes for a big file
            if watch.items.get(BATCH_ID, 0) >= BATCH_CLAIMS:
                break
            await asyncio.sleep(0.2)
        watch.stop = True
        watch.join(5)
    finally:
        producer.close()
        await runner.stop(pipeline)
    steady = sorted(float(watch.first[m] - watch.sent[m]) for m in watch.first if m != BATCH_ID and m in watch.sent)
    batch_sent = watch.sent.get(BATCH_ID)
    return {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "claims_stored_before": len(claims),
        "steady": {
            "files_per_second": rate,
            "files": steady_n,
            "sent_in_seconds": round(sent_for, 2),
            "items": len(steady),
            **quantiles_ms(steady),
        },
        "batch": {
            "claims": BATCH_CLAIMS,
            "items": watch.items.get(BATCH_ID, 0),
            "first_item_ms": (watch.first[BATCH_ID] - batch_sent) if batch_sent and BATCH_ID in watch.first else None,
            "last_item_ms": (watch.last[BATCH_ID] - batch_sent) if batch_sent and BATCH_ID in watch.last else None,
        },
        "counts": {k: v for k, v in pipeline.counts.items() if k.startswith("denials.")},
    }


def run(rate: float = RATE, seconds: float = SECONDS) -> dict:
    return run_on_local_stack(_bench, rate, seconds)


if __name__ == "__main__":
    print(json.dumps(run(*rate_and_seconds(RATE, SECONDS)), indent=2))
