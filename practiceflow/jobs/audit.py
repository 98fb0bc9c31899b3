"""`practiceflow audit verify`: read the stored audit chains and say whether they are intact.

Two stores hold the chain and both are checked: the ``pf.audit`` topic (the system of record:
never deleted by retention, read in offset order, which is chain order since a practice's
events share one partition) and ClickHouse's ``audit_events`` table (ordered by the Kafka
position the sink stored with each row). For each practice the first bad position is named
(:func:`~practiceflow.processors.audit.find_break`: altered, deleted-before / reordered,
doubled) and the exit code is 1. Deleting the *last* events of a chain leaves a shorter
chain that verifies on its own; the two stores are therefore also compared: a head (last
hash) that differs between them, or an event count that does, is reported too, so a
truncation in one store is caught by the other. Prints ids, hashes and positions only, never
the events' reasons (no PHI on a terminal).
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from practiceflow.processors.audit import ChainBreak, find_break
from practiceflow.settings import Settings
from practiceflow.streams import catalog
from practiceflow.streams.serde import AvroSerde

EVENT_FIELDS = ("practice_id", "event_id", "at", "actor", "action", "entity_type", "entity_id", "reason", "outcome")


def add_arguments(p: argparse.ArgumentParser) -> None:
    asub = p.add_subparsers(dest="action", required=True)
    v = asub.add_parser("verify", help="check every practice's hash chain in pf.audit and ClickHouse")
    v.add_argument("--practice", help="only this practice")
    v.add_argument("--source", choices=["both", "topic", "clickhouse"], default="both")


def read_topic_chains(
    bootstrap: str, serde: AvroSerde, prefix: str, practice: str | None = None, timeout: float = 60.0
) -> dict[str, list[dict[str, Any]]]:
    """Every practice's events on ``<prefix>.audit`` in offset (= chain) order; reads, never commits."""
    topic = catalog.BY_SUFFIX["audit"].name(prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"practiceflow-audit-verify-{uuid.uuid4().hex[:8]}",  # assign() only, never commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return out
        n = len(meta.partitions)
        parts = [catalog.partition_for(practice, n)] if practice else sorted(meta.partitions)
        for part in parts:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=timeout)
            if hi <= lo:
                continue
            consumer.assign([TopicPartition(topic, part, lo)])
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic}[{part}] to its end in {timeout}s")
                m = consumer.poll(0.5)
                if m is None:
                    continue
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        break
                    continue
                ev = serde.decode(m.value() or b"", "AuditEvent")
                if practice is None or ev["practice_id"] == practice:
                    out.setdefault(ev["practice_id"], []).append(ev)
                offset = m.offset()
                if offset is not None and offset + 1 >= hi:
                    break
    finally:
        consumer.close()
    return out


def read_clickhouse_chains(sink: Any, practice: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every practice's rows of ``audit_events`` in the order the chain was written (Kafka position).

    FINAL collapses the rows a re-delivered batch wrote twice (same event id); the chain needs
    ``details`` too (they are hashed), stored since this version."""
    where = "WHERE practice_id = %(p)s" if practice else ""  # the practice is a bound parameter
    sql = (
        "SELECT practice_id, event_id, toUnixTimestamp64Milli(at), actor, action, entity_type, entity_id, reason,"  # noqa: S608
        " outcome, details, prev_hash, hash FROM {db}.audit_events FINAL "
        + where
        + " ORDER BY practice_id, kafka_partition, kafka_offset"
    )
    rows = sink.query(sql, {"p": practice} if practice else None)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        ev = dict(zip(EVENT_FIELDS, r[:9], strict=True))
        ev["at"] = int(ev["at"])
        ev["details"] = dict(r[9] or {})
        ev["prev_hash"], ev["hash"] = r[10], r[11]
        out.setdefault(ev["practice_id"], []).append(ev)
    return out


def verify_stores(stores: dict[str, dict[str, list[dict[str, Any]]]]) -> tuple[list[str], list[str]]:
    """(lines to print, problems) for chains read from one or more stores (name -> practice -> events)."""
    lines: list[str] = []
    problems: list[str] = []
    heads: dict[str, dict[str, tuple[int, str]]] = {}
    for store, chains in stores.items():
        for practice in sorted(chains):
            events = chains[practice]
            brk: ChainBreak | None = find_break(events)
            if brk is None:
                head = str(events[-1]["hash"]) if events else ""
                heads.setdefault(practice, {})[store] = (len(events), head)
                lines.append(f"{store:10s} {practice:20s} {len(events):7d} events  ok  head {head[:16]}")
            else:
                msg = f"{store:10s} {practice:20s} {len(events):7d} events  BROKEN at {brk.describe()}"
                lines.append(msg)
                problems.append(msg)
    if len(stores) > 1:
        for practice, by_store in sorted(heads.items()):
            if len(by_store) < len(stores):
                continue  # broken in one store (reported above) or absent there
            if len(set(by_store.values())) > 1:
                seen = ", ".join(f"{s}: {n} events, head {h[:16]}" for s, (n, h) in sorted(by_store.items()))
                msg = f"{'stores':10s} {practice:20s} disagree ({seen}): events missing at the end of one store"
                lines.append(msg)
                problems.append(msg)
    return lines, problems


def main(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.localstack.connect import endpoints
    from practiceflow.streams.serde import registry_client

    stores: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if args.source in ("both", "topic"):
        with endpoints(cfg, autostart=False) as ep:
            serde = AvroSerde(registry_client(ep.registry_url))
            stores["topic"] = read_topic_chains(ep.bootstrap, serde, cfg.topic_prefix, args.practice)
    if args.source in ("both", "clickhouse"):
        from practiceflow.sinks.clickhouse import ClickHouseSink

        sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database)
        try:
            stores["clickhouse"] = read_clickhouse_chains(sink, args.practice)
        finally:
            sink.close()
    lines, problems = verify_stores(stores)
    print(f"{'store':10s} {'practice':20s} {'count':>7s}")
    for line in lines:
        print(line)
    if not any(stores.values()):
        print("no audit events found")
    print(f"{len(problems)} problem(s)" if problems else "every chain verifies")
    return 1 if problems else 0
