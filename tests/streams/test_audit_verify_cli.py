"""`practiceflow audit verify` against the real broker's pf.audit topic and ClickHouse (chdb).

Chains are written as the audit agent writes them (one practice per partition, in order);
then one event is deleted, altered or moved in a store, and the command must name the first
bad position and exit 1; untouched chains exit 0.
"""

from __future__ import annotations

import pytest

from practiceflow import cli
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.processors.test_audit_verify import _chain
from tests.streams.test_dlq_and_dedup import _cli_env

pytestmark = pytest.mark.broker


def _write(stack, cfg, chains: dict[str, list[dict]]) -> None:
    """Each chain to pf.audit (its practice's partition, in order) and to ClickHouse with its position."""
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    topic = catalog.BY_SUFFIX["audit"].name(cfg.topic_prefix)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database)
    try:
        batch = []
        for practice, events in chains.items():
            for ev in events:
                d = producer.send(topic, practice, serde.encode(f"{topic}-value", "AuditEvent", ev), practice)
                batch.append(("AuditEvent", ev, (d.topic, d.partition, d.offset)))  # as the sink stores it
        sink.write_batch(batch, 0)
    finally:
        producer.close()
        sink.close()


def _run(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(["audit", "verify", *argv])
    return rc, capsys.readouterr().out


def _tamper(cfg, sql: str) -> None:
    sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database)
    try:
        sink.query(sql)
    finally:
        sink.close()


def test_audit_verify_names_the_first_bad_position_in_each_store(cfg, stack, monkeypatch, capsys):
    _cli_env(monkeypatch, cfg, stack)
    good = _chain(5, "clinic-ok")
    deleted = _chain(5, "clinic-del")
    deleted_ids = deleted[2]["event_id"]
    del deleted[2]  # as if someone removed it from the topic (compaction tooling, a rewritten copy)
    altered = _chain(5, "clinic-alt")
    altered[3] = dict(altered[3], reason="nothing to see")
    moved = _chain(5, "clinic-mov")
    moved[1], moved[2] = moved[2], moved[1]
    _write(stack, cfg, {"clinic-ok": good, "clinic-del": deleted, "clinic-alt": altered, "clinic-mov": moved})

    rc, out = _run(capsys, "--practice", "clinic-ok")
    assert rc == 0 and "every chain verifies" in out and out.count(" ok ") == 2  # topic and ClickHouse
    for practice, position, words in (
        ("clinic-del", 2, "deleted before it"),
        ("clinic-alt", 3, "altered"),
        ("clinic-mov", 1, "reordered"),
    ):
        rc, out = _run(capsys, "--practice", practice, "--source", "topic")
        assert rc == 1, out
        assert f"BROKEN at position {position} " in out and words in out, out
    assert deleted_ids not in capsys.readouterr().out

    # ClickHouse tampered behind the sink's back: the topic still verifies, the table does not
    good_ch = _chain(6, "clinic-ch")
    _write(stack, cfg, {"clinic-ch": good_ch})
    rc, out = _run(capsys, "--practice", "clinic-ch")
    assert rc == 0, out
    _tamper(
        cfg,
        "ALTER TABLE {db}.audit_events UPDATE outcome = 'refused' "
        f"WHERE event_id = '{good_ch[4]['event_id']}' SETTINGS mutations_sync = 1",
    )
    rc, out = _run(capsys, "--practice", "clinic-ch", "--source", "clickhouse")
    assert rc == 1 and "BROKEN at position 4 " in out and "altered" in out, out
    # and the whole check (both stores) fails too, and says which store
    rc, out = _run(capsys, "--practice", "clinic-ch")
    assert rc == 1 and "clickhouse" in out.split("BROKEN")[0].splitlines()[-1], out

    trunc = _chain(4, "clinic-cut")
    _write(stack, cfg, {"clinic-cut": trunc})
    _tamper(
        cfg,
        f"ALTER TABLE {{db}}.audit_events DELETE WHERE event_id = '{trunc[1]['event_id']}' SETTINGS mutations_sync = 1",
    )
    rc, out = _run(capsys, "--practice", "clinic-cut", "--source", "clickhouse")
    assert rc == 1 and "BROKEN at position 1 " in out, out

    swap = _chain(4, "clinic-swap")
    _write(stack, cfg, {"clinic-swap": swap})
    a, b = swap[1]["event_id"], swap[2]["event_id"]
    _tamper(
        cfg,
        "ALTER TABLE {db}.audit_events UPDATE kafka_offset = if(event_id = "
        f"'{a}', kafka_offset + 1, kafka_offset - 1) WHERE event_id IN ('{a}', '{b}') SETTINGS mutations_sync = 1",
    )
    rc, out = _run(capsys, "--practice", "clinic-swap", "--source", "clickhouse")
    assert rc == 1 and "BROKEN at position 1 " in out, out

    # the last event missing from ClickHouse alone: its chain is shorter but intact. On a live system
    # that is the sink being behind (review s18 S5: reported, exit 0) ...
    tail = _chain(3, "clinic-tail")
    _write(stack, cfg, {"clinic-tail": tail})
    _tamper(
        cfg,
        f"ALTER TABLE {{db}}.audit_events DELETE WHERE event_id = '{tail[2]['event_id']}' SETTINGS mutations_sync = 1",
    )
    group = f"audit-verify-sink-{cfg.topic_prefix}"
    rc, out = _run(capsys, "--practice", "clinic-tail", "--sink-group", group)
    assert rc == 0 and "ClickHouse behind by 1" in out, out
    # ... unless the sink already committed that event: then it was deleted from ClickHouse
    _commit_sink(stack, cfg, group, "clinic-tail")
    rc, out = _run(capsys, "--practice", "clinic-tail", "--sink-group", group)
    assert rc == 1 and "1 events the sink committed are missing" in out, out

    # the retention TTL deleted ClickHouse's oldest rows (these events are from 1970): its chain
    # starts mid-way, links to the topic's, and verifies
    old = _chain(4, "clinic-ttl")
    _write(stack, cfg, {"clinic-ttl": old})
    _tamper(
        cfg,
        f"ALTER TABLE {{db}}.audit_events DELETE WHERE event_id = '{old[0]['event_id']}' SETTINGS mutations_sync = 1",
    )
    rc, out = _run(capsys, "--practice", "clinic-ttl")
    assert rc == 0 and "past the retention TTL" in out, out
    rc, out = _run(capsys, "--practice", "clinic-ttl", "--source", "clickhouse")
    assert rc == 0 and "starts after the retention TTL" in out, out


def _commit_sink(stack, cfg, group: str, practice: str) -> None:
    """Commit the audit partition's end for ``group``, as the sink does after ClickHouse confirmed."""
    from confluent_kafka import Consumer, TopicPartition

    topic = catalog.BY_SUFFIX["audit"].name(cfg.topic_prefix)
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        part = catalog.partition_for(practice, cfg.topic_partitions)
        hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[1]
        c.commit(offsets=[TopicPartition(topic, part, hi)], asynchronous=False)
    finally:
        c.close()


def test_audit_verify_reads_clickhouse_without_migrating_it(cfg, stack, monkeypatch, capsys):
    """Review s18 S5: the read-only verify constructed the sink, which ran the migrations: a second
    migrator beside the deployment's (README: one process migrates at a time)."""
    from practiceflow.sinks import clickhouse_migrations

    _cli_env(monkeypatch, cfg, stack)
    _write(stack, cfg, {"clinic-ro": _chain(3, "clinic-ro")})

    def refuse(*args, **kw):
        raise AssertionError("audit verify ran the migrations")

    monkeypatch.setattr(clickhouse_migrations, "apply_migrations", refuse)
    monkeypatch.setattr(clickhouse_migrations, "apply_retention", refuse)
    rc, out = _run(capsys, "--practice", "clinic-ro")
    assert rc == 0 and "every chain verifies" in out, out
