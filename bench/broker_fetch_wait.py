"""How much of a core one idle consumer's fetch wait costs the broker (session 25, issue 8).

The e2e bench's FlowEvent watcher fetched with ``fetch.wait.max.ms=5``; the broker's load in
every phase looked flat at ~0.4-0.5 of a core. This starts a one-node stack of its own
(``LocalStack``), measures the broker with no clients, then with one consumer assigned to the
4 partitions of an empty topic at several fetch waits, 20 s each (CPU from /proc, all threads).

    .venv/bin/python bench/broker_fetch_wait.py [--out bench/results/broker_fetch_wait.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def cores(pid: int, seconds: float) -> float:
    c0, t0 = cpu(pid), time.time()
    time.sleep(seconds)
    return round((cpu(pid) - c0) / (time.time() - t0), 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    from confluent_kafka import Consumer, TopicPartition

    from practiceflow.localstack.stack import LocalStack
    from practiceflow.settings import REPO_ROOT
    from practiceflow.streams.topics import create_topics

    stack = LocalStack(Path(tempfile.mkdtemp(prefix="fetch-wait-")) / "stack", cache_dir=REPO_ROOT / ".stack" / "cache")
    info = stack.start()
    out: dict = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_at_start": os.getloadavg()}
    try:
        broker = info.kafka_pids[0]
        create_topics(info.bootstrap, "fw", 4, 1)
        time.sleep(5)
        out["broker_cores_no_clients"] = cores(broker, args.seconds)
        for wait in (5, 100, 500):
            c = Consumer({"bootstrap.servers": info.bootstrap, "group.id": "fw", "enable.auto.commit": False,
                          "fetch.wait.max.ms": wait, "fetch.min.bytes": 1})  # fmt: skip
            c.assign([TopicPartition("fw.analytics.flow", p, 0) for p in range(4)])
            stop = threading.Event()

            def run(consumer: Consumer = c, done: threading.Event = stop) -> None:
                while not done.is_set():
                    consumer.consume(num_messages=1000, timeout=0.05)

            t = threading.Thread(target=run)
            t.start()
            time.sleep(3)
            out[f"broker_cores_one_consumer_fetch_wait_{wait}ms"] = cores(broker, args.seconds)
            stop.set()
            t.join()
            c.close()
    finally:
        stack.stop()
    out["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
