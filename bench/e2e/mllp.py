"""The MLLP senders (open loop at a rate, or as fast as the gateways answer) and the FlowEvent watcher."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from typing import Any

from e2e.messages import PARTITIONS

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
CONNECTIONS = 8


class FlowWatcher:
    """Reads ``pf.analytics.flow`` (a plain consumer, no group) and notes when each message id
    was first seen. Keys are ``<practice>/<message id>``, so no Avro decoding is needed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-watch-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                # a fetch returns as soon as one byte is there (fetch.min.bytes), so the wait only
                # bounds empty fetches: at 5 ms this observer alone kept the broker at ~0.17-0.19 of a
                # core (bench/e2e_notes.md, session 25), a load no production pipeline has
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 1,
            }
        )
        # start at each partition's high watermark read NOW (with retries while a just-created
        # topic's leader settles): OFFSET_END is resolved at the first fetch, and a fetch that
        # failed on a leaderless partition resolved it again later, past flow events the worker
        # had written meanwhile (the warm-up then reported 3-60 of 400 messages "missing")
        from practiceflow.streams.positions import watermarks

        self._c.assign(
            [TopicPartition(topic, p, watermarks(self._c, TopicPartition(topic, p), 10)[1]) for p in range(PARTITIONS)]
        )
        self._thread = threading.Thread(target=self._run, name="flow-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._c.consume(num_messages=1000, timeout=0.05):
                if m.error() is None and m.key() is not None:
                    now = time.perf_counter()
                    mid = m.key().decode().split("/", 1)[1]
                    self.seen.setdefault(mid, now)

    def wait(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.seen for i in ids[-50:]) and all(i in self.seen for i in ids):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._c.close()


async def send_all(
    ports: dict[str, int],
    msgs: list[tuple[str, bytes]],
    *,
    rate: float | None = None,
    window: int = 64,
) -> dict[str, Any]:
    """Send ``msgs`` over ``CONNECTIONS`` MLLP connections (spread over the practices'
    listeners). ``rate`` None: as fast as the gateways take them (up to ``window`` unanswered
    frames per connection); else open loop at ``rate`` msg/s overall. Returns send times
    (perf_counter, by index) and ACK codes."""
    sent_at: list[float] = [0.0] * len(msgs)
    acks: dict[str, int] = {}
    conns_per_practice = max(1, CONNECTIONS // len(ports))
    lanes: list[tuple[str, list[int]]] = []
    by_practice: dict[str, list[int]] = {}
    for idx, (practice, _payload) in enumerate(msgs):
        by_practice.setdefault(practice, []).append(idx)
    for practice, idxs in by_practice.items():
        for c in range(conns_per_practice):
            lanes.append((practice, idxs[c::conns_per_practice]))
    t0 = time.perf_counter()

    async def lane(practice: str, idxs: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[practice], limit=1 << 20)
        credit = asyncio.Semaphore(window)

        async def read_acks() -> None:
            buf = b""
            got = 0
            while got < len(idxs):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("gateway closed the connection")
                buf += chunk
                while (end := buf.find(FS + CR)) >= 0:
                    frame, buf = buf[:end], buf[end + 2 :]
                    m = re.search(rb"MSA\|(\w\w)", frame)
                    code = m.group(1).decode() if m else "??"
                    acks[code] = acks.get(code, 0) + 1
                    got += 1
                    credit.release()

        acker = asyncio.ensure_future(read_acks())
        for idx in idxs:
            if rate is not None:
                delay = t0 + idx / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await credit.acquire()
            sent_at[idx] = time.perf_counter()
            writer.write(VT + msgs[idx][1] + FS + CR)
            await writer.drain()
        await acker
        writer.close()

    await asyncio.gather(*(lane(p, i) for p, i in lanes))
    return {"sent_at": sent_at, "acks": acks, "acked_at": time.perf_counter()}
