"""`practiceflow audit verify`: read the stored audit chains and say whether they are intact.

Two stores hold the chain and both are checked: the ``pf.audit`` topic (the system of record:
never deleted by retention, read in offset order, which is chain order since a practice's
events share one partition) and ClickHouse's ``audit_events`` table (ordered by the Kafka
position the sink stored with each row). For each practice the first bad position is named
(:func:`~practiceflow.processors.audit.find_break`: altered, deleted-before / reordered,
doubled) and the exit code is 1. Prints ids, hashes and positions only, never the events'
reasons (no PHI on a terminal).

On a live system the two stores differ in two normal ways, which are reported but are not
problems (review s18 S5):

* ClickHouse is *behind*: the sink writes some batches after the topic. ClickHouse must then be
  a prefix of the topic chain (its head equal to the topic's hash at the same event), and the
  rest is "behind by N". Deleting the *last* rows of ClickHouse would look the same, so the
  events the sink already committed (its consumer group's offset, read before ClickHouse) must
  be in ClickHouse: a committed event that is missing is a problem.
* ClickHouse *starts later*: the retention TTL (``clickhouse_audit_retention_days``) deleted its
  oldest rows, so its first row links to an event it no longer holds. Its chain is checked from
  there on, and against the topic: the events it lacks at the start must be older than the TTL.

ClickHouse is opened without running the migrations (a read-only check is not a second migrator:
README "one process migrates at a time").
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from practiceflow.processors.audit import GENESIS, ChainBreak, find_break
from practiceflow.settings import Settings
from practiceflow.streams import catalog
from practiceflow.streams.positions import position
from practiceflow.streams.serde import AvroSerde
from practiceflow.streams.topic_reader import read_spans, reader_consumer, spans_to_end

EVENT_FIELDS = ("practice_id", "event_id", "at", "actor", "action", "entity_type", "entity_id", "reason", "outcome")


def add_arguments(p: argparse.ArgumentParser) -> None:
    asub = p.add_subparsers(dest="action", required=True)
    v = asub.add_parser("verify", help="check every practice's hash chain in pf.audit and ClickHouse")
    v.add_argument("--practice", help="only this practice")
    v.add_argument("--source", choices=["both", "topic", "clickhouse"], default="both")
    v.add_argument(
        "--sink-group",
        help="the ClickHouse sink's consumer group (default: <consumer_group>-clickhouse-sink): what it "
        "committed must be in ClickHouse",
    )


def read_topic_chains(
    bootstrap: str,
    serde: AvroSerde,
    prefix: str,
    practice: str | None = None,
    timeout: float = 60.0,
    offsets: dict[str, list[int]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every practice's events on ``<prefix>.audit`` in offset (= chain) order; reads, never commits.
    ``offsets`` (when given) receives each practice's events' offsets, in the same order."""
    topic = catalog.BY_SUFFIX["audit"].name(prefix)
    consumer = reader_consumer(bootstrap, "audit-verify")
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for span in spans_to_end(consumer, topic, timeout, practice_id=practice or None):
            for m in read_spans(consumer, [span], timeout):  # one partition after the other, each in `timeout`
                ev = serde.decode(m.value() or b"", "AuditEvent")
                if practice is None or ev["practice_id"] == practice:
                    out.setdefault(ev["practice_id"], []).append(ev)
                    if offsets is not None:
                        offsets.setdefault(ev["practice_id"], []).append(position(m)[2])
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


def sink_committed(bootstrap: str, prefix: str, group: str) -> tuple[int, dict[int, int]]:
    """(partitions of ``audit``, partition -> the offset the ClickHouse sink's group committed):
    everything before it is in ClickHouse (the sink commits only what ClickHouse confirmed).
    Partitions it never committed are absent. Read without joining the group."""
    from practiceflow.streams.clickhouse_sink import _committed

    topic = catalog.BY_SUFFIX["audit"].name(prefix)
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        meta = probe.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return 0, {}
        tps = [TopicPartition(topic, q) for q in sorted(meta.partitions)]
        done = {tp.partition: int(tp.offset) for tp in _committed(probe, tps, 10) if tp.offset >= 0}
        return len(meta.partitions), done
    finally:
        probe.close()


def _compare(
    practice: str,
    topic: list[dict[str, Any]],
    house: list[dict[str, Any]],
    offsets: list[int] | None,
    committed: int | None,
    retention_cutoff_ms: int | None,
) -> tuple[str, str | None]:
    """(line, problem or None): ClickHouse's chain must be one stretch of the topic's, starting
    at its genesis or after events older than the TTL, and ending at or before the topic's head
    but not before what the sink committed."""
    label = f"{'stores':10s} {practice:20s}"
    first = 0
    if house:
        index = {str(ev["event_id"]): i for i, ev in enumerate(topic)}
        if str(house[0]["event_id"]) not in index:
            msg = f"{label} disagree: ClickHouse's first event {house[0]['event_id']} is not on the topic"
            return msg, msg
        first = index[str(house[0]["event_id"])]
    end = first + len(house)
    if end > len(topic) or (house and topic[end - 1]["hash"] != house[-1]["hash"]):
        msg = (
            f"{label} disagree: ClickHouse ({len(house)} events, head {str(house[-1]['hash'])[:16]}) is not "
            f"a stretch of the topic chain ({len(topic)} events): events missing or added in one store"
        )
        return msg, msg
    if first and (retention_cutoff_ms is None or int(topic[first - 1]["at"]) >= retention_cutoff_ms):
        msg = f"{label} ClickHouse lacks the first {first} events, and they are not past the retention TTL"
        return msg, msg
    behind = len(topic) - end
    if behind and offsets is not None and committed is not None:
        missing = sum(1 for o in offsets[end:] if 0 <= o < committed)
        if missing:
            msg = f"{label} {missing} events the sink committed are missing at the end of ClickHouse"
            return msg, msg
    notes = [f"ClickHouse behind by {behind}" if behind else "ClickHouse up to date"]
    if first:
        notes.append(f"starts after {first} events past the retention TTL")
    return f"{label} agree ({', '.join(notes)})", None


def verify_stores(
    stores: dict[str, dict[str, list[dict[str, Any]]]],
    *,
    truncated_ok: frozenset[str] = frozenset(),
    topic_offsets: dict[str, list[int]] | None = None,
    committed: dict[str, int] | None = None,
    retention_cutoff_ms: int | None = None,
) -> tuple[list[str], list[str]]:
    """(lines to print, problems) for chains read from one or more stores (name -> practice -> events).

    ``truncated_ok``: stores whose oldest events a TTL may have deleted (their chain is checked
    from their first event's ``prev_hash``). With both "topic" and "clickhouse": ClickHouse is
    compared as a stretch of the topic (:func:`_compare`); ``topic_offsets`` and ``committed``
    (the sink's committed offset per practice) tell "behind" from "tail deleted";
    ``retention_cutoff_ms`` (events before it may be gone from ClickHouse)."""
    lines: list[str] = []
    problems: list[str] = []
    intact: dict[str, dict[str, list[dict[str, Any]]]] = {}
    broken: set[str] = set()
    for store, chains in stores.items():
        for practice in sorted(chains):
            events = chains[practice]
            start = None
            if store in truncated_ok and events and events[0].get("prev_hash") not in (None, GENESIS):
                start = str(events[0]["prev_hash"])  # the TTL deleted the events before this one
            brk: ChainBreak | None = find_break(events, start=start)
            if brk is None:
                intact.setdefault(practice, {})[store] = events
                head = str(events[-1]["hash"]) if events else ""
                after = "  (starts after the retention TTL)" if start else ""
                lines.append(f"{store:10s} {practice:20s} {len(events):7d} events  ok  head {head[:16]}{after}")
            else:
                msg = f"{store:10s} {practice:20s} {len(events):7d} events  BROKEN at {brk.describe()}"
                lines.append(msg)
                problems.append(msg)
                broken.add(practice)
    if "topic" in stores and "clickhouse" in stores:
        for practice, by_store in sorted(intact.items()):
            if practice in broken:
                continue  # a chain broken in one store is reported above, not compared
            line, problem = _compare(
                practice,
                by_store.get("topic", []),
                by_store.get("clickhouse", []),
                (topic_offsets or {}).get(practice),
                (committed or {}).get(practice),
                retention_cutoff_ms,
            )
            lines.append(line)
            if problem:
                problems.append(problem)
    return lines, problems


def main(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.localstack.connect import endpoints
    from practiceflow.streams.serde import registry_client

    stores: dict[str, dict[str, list[dict[str, Any]]]] = {}
    offsets: dict[str, list[int]] = {}
    committed: dict[str, int] = {}
    if args.source == "clickhouse":
        stores["clickhouse"] = _read_clickhouse(cfg, args.practice)
    else:
        with endpoints(cfg, autostart=False) as ep:
            # the order matters on a live system: the sink's committed offsets first (all of that is
            # in ClickHouse by then), then ClickHouse, then the topic (holding all ClickHouse holds)
            n, done = 0, dict[int, int]()
            if args.source == "both":
                n, done = sink_committed(
                    ep.bootstrap, cfg.topic_prefix, args.sink_group or f"{cfg.consumer_group}-clickhouse-sink"
                )
                stores["clickhouse"] = _read_clickhouse(cfg, args.practice)
            serde = AvroSerde(registry_client(ep.registry_url))
            stores["topic"] = read_topic_chains(ep.bootstrap, serde, cfg.topic_prefix, args.practice, offsets=offsets)
            for practice in stores["topic"]:
                if n and catalog.partition_for(practice, n) in done:
                    committed[practice] = done[catalog.partition_for(practice, n)]
    if "topic" in stores:
        stores = {"topic": stores["topic"], **{k: v for k, v in stores.items() if k != "topic"}}
    days = cfg.clickhouse_audit_retention_days
    lines, problems = verify_stores(
        stores,
        truncated_ok=frozenset({"clickhouse"}) if days > 0 else frozenset(),
        topic_offsets=offsets,
        committed=committed,
        retention_cutoff_ms=int((time.time() - days * 86400) * 1000) if days > 0 else None,
    )
    print(f"{'store':10s} {'practice':20s} {'count':>7s}")
    for line in lines:
        print(line)
    if not any(stores.values()):
        print("no audit events found")
    print(f"{len(problems)} problem(s)" if problems else "every chain verifies")
    return 1 if problems else 0


def _read_clickhouse(cfg: Settings, practice: str | None) -> dict[str, list[dict[str, Any]]]:
    """The ClickHouse chains, read without migrating (a database never migrated has none)."""
    from practiceflow.sinks.clickhouse import ClickHouseSink

    sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database, migrate=False)
    try:
        if not sink.query("EXISTS TABLE {db}.audit_events")[0][0]:
            return {}
        return read_clickhouse_chains(sink, practice)
    finally:
        sink.close()
