"""A ClickHouse sink in its own process, for the kill -9 test (tests/streams/test_clickhouse_sink.py).

``crash``: the first batch is written and committed normally; the second is written to
ONE table only, then a marker file appears and the process waits to be SIGKILLed (a crash
between ClickHouse inserts, before the offset commit). ``drain``: run until the group's
committed lag is 0, then print the tables' raw and FINAL counts as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams.clickhouse_sink import ClickHouseSinkConsumer, committed_lag
from practiceflow.streams.serde import AvroSerde, registry_client

TABLES = ("flow_events", "audit_events", "dead_letters")


def main(mode: str, bootstrap: str, registry: str, prefix: str, dsn: str, group: str, marker: str) -> int:
    sink = ClickHouseSink(dsn)
    calls = {"n": 0}

    def crashing_write(items, now):
        calls["n"] += 1
        if calls["n"] == 1:
            return sink.write_batch(items, now)
        first_type = items[0][0]
        sink.write_batch([i for i in items if i[0] == first_type], now)  # one table (all, if one type)
        Path(marker).write_text("written one table; not committed")
        time.sleep(600)
        raise SystemExit(3)

    consumer = ClickHouseSinkConsumer(
        bootstrap,
        AvroSerde(registry_client(registry)),
        prefix,
        sink,
        group_id=group,
        batch_size=40,
        batch_seconds=1.0,
        write=crashing_write if mode == "crash" else None,
    )
    consumer.start()
    if mode == "crash":
        time.sleep(600)
        return 3
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and committed_lag(bootstrap, group, list(consumer.topics)) > 0:
        time.sleep(0.5)
    consumer.stop()
    out = {}
    for t in TABLES:
        out[t] = {
            "raw": sink.query(f"SELECT count() FROM {{db}}.{t}")[0][0],
            "final": sink.query(f"SELECT count() FROM {{db}}.{t} FINAL")[0][0],
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
