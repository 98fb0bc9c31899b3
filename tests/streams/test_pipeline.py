"""End to end through the real broker: raw -> Faust agent -> normalized, handoff, DLQ, ClickHouse."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer

from practiceflow.jobs.run_file import raw_record
from practiceflow.processors.audit import verify_chain
from practiceflow.schemas import headers
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.fixtures import oru_r01

pytestmark = pytest.mark.broker


def consume_all(bootstrap: str, topic: str, serde, expect: int, timeout: float = 30.0) -> list[tuple[bytes, dict]]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[tuple[bytes, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.key(), serde.decode(msg.value())))
    finally:
        c.close()
    return out


async def _run(cfg, stack, raws, until, sink=None, app_id=None):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, sink=sink, app_id=app_id)
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    try:
        for raw in raws:
            topic = f"{cfg.topic_prefix}.raw.{raw['feed']}"
            await producer.send_async(
                topic,
                f"{raw['practice_id']}/{raw['message_id']}",
                pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
                raw["practice_id"],
            )
        assert await runner.wait_for(lambda: until(pipeline), 60), pipeline.counts
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline


def test_oru_flows_to_handoff_and_clickhouse(cfg, stack):
    sink = ClickHouseSink(cfg.chdb_dsn)
    try:
        _oru_flows(cfg, stack, sink)
    finally:
        sink.close()  # chdb: one engine path per process; later tests open their own


def _oru_flows(cfg, stack, sink: ClickHouseSink) -> None:
    raw = raw_record("clinic-a", "hl7v2", oru_r01())
    p = asyncio.run(
        _run(
            cfg,
            stack,
            [raw],
            lambda p: (
                p.counts.get("clickhouse.handoff_items", 0) >= 1 and p.counts.get("clickhouse.observations", 0) >= 3
            ),
            sink=sink,
        )
    )
    assert p.counts["hl7v2.normalized"] == 1
    assert p.counts["record.Observation"] == 3

    handoffs = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", p.serde, 1)
    assert len(handoffs) == 1
    key, item = handoffs[0]
    assert key.startswith(b"clinic-a/")
    assert item["queue"] == "clinician" and item["priority"] == "high"
    assert item["patient_id"] == "MRN1001"
    assert any("Glucose" in e["label"] for e in item["evidence"])

    obs = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.observation", p.serde, 3)
    assert sorted(o["code"]["code"] for _, o in obs) == ["2345-7", "2823-3", "2951-2"]
    # one practice, one partition: all three landed on the same partition
    rows = sink.query("SELECT code, value_numeric, flags FROM {db}.observations FINAL ORDER BY code")
    assert rows == [("2345-7", 182.0, ["H"]), ("2823-3", 4.1, ["N"]), ("2951-2", 140.0, ["N"])]
    assert sink.query("SELECT workflow, queue, patient_id FROM {db}.handoff_items FINAL") == [
        ("results_review", "clinician", "MRN1001")
    ]


def test_malformed_message_lands_in_dead_letter_with_original_bytes(cfg, stack):
    garbage = b"this is not HL7 at all\r\x00\xff"
    raw = raw_record("clinic-a", "hl7v2", garbage)
    p = asyncio.run(_run(cfg, stack, [raw], lambda p: p.counts.get("hl7v2.dead_lettered", 0) >= 1))
    dl = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.dlq.hl7v2", p.serde, 1)
    assert len(dl) == 1
    letter = dl[0][1]
    assert letter["payload"] == garbage
    assert letter["reason_code"] != "internal_error" and letter["reason"]
    assert letter["stage"] == "normalize" and letter["message_id"] == raw["message_id"]
    assert p.counts.get("hl7v2.normalized", 0) == 0


def test_resend_is_not_processed_twice_and_audit_chain_verifies(cfg, stack):
    first = raw_record("clinic-b", "hl7v2", oru_r01(control_id="DUP1"))
    again = dict(first, received_at=first["received_at"] + 5000)
    p = asyncio.run(
        _run(
            cfg,
            stack,
            [first, again],
            # and the audit chain caught up (the compiled normalizer can outrun it before the stop)
            lambda p: (
                p.counts.get("hl7v2.normalized", 0) + p.counts.get("hl7v2.duplicate", 0) >= 2
                and p.counts.get("audit.chained", 0) >= 2
            ),
        )
    )
    assert p.counts["hl7v2.normalized"] == 1 and p.counts["hl7v2.duplicate"] == 1
    handoffs = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", p.serde, 2, timeout=8)
    assert len(handoffs) == 1
    audit = [ev for _, ev in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.audit", p.serde, 2)]
    assert [e["action"] for e in audit] == ["handoff_created", "normalized"]
    assert verify_chain(audit) == (True, -1)
    tampered = [dict(audit[0], reason="edited"), audit[1]]
    assert verify_chain(tampered) == (False, 0)


def test_restart_recovers_the_dedup_table_from_its_changelog(cfg, stack):
    """A worker restart must not forget what it handled: the resend after it is a duplicate."""
    msg = raw_record("clinic-r", "hl7v2", oru_r01(control_id="RESTART1"))
    app_id = f"restart-{uuid.uuid4().hex[:6]}"

    first = asyncio.run(_run(cfg, stack, [msg], lambda p: p.counts.get("hl7v2.normalized", 0) == 1, app_id=app_id))
    assert first.counts["hl7v2.normalized"] == 1
    second = asyncio.run(
        _run(
            cfg,
            stack,
            [dict(msg, received_at=msg["received_at"] + 1)],
            lambda p: p.counts.get("hl7v2.duplicate", 0) == 1,
            app_id=app_id,
        )
    )
    assert second.counts.get("hl7v2.normalized", 0) == 0  # the first message was not replayed either


def test_old_message_ids_are_forgotten_with_tombstones_in_the_changelog(cfg, stack):
    """The de-dup table is bounded: ids older than the retention are deleted (in the
    changelog too), so a late copy is processed again, a prompt resend is still a duplicate."""
    cfg.dedup_retention_hours = 1 / 3600  # one second of event time
    app_id = f"forget-{uuid.uuid4().hex[:6]}"
    a = raw_record("clinic-d", "hl7v2", oru_r01(control_id="OLD-A"))
    b = raw_record("clinic-d", "hl7v2", oru_r01(control_id="OLD-B", mrn="MRN2002"))
    t = a["received_at"]
    sequence = [
        dict(a, received_at=t),
        dict(b, received_at=t + 100),
        dict(b, received_at=t + 500),
        dict(a, received_at=t + 5_000),
    ]

    def done(p):
        return p.counts.get("hl7v2.normalized", 0) + p.counts.get("hl7v2.duplicate", 0) >= 4

    first = asyncio.run(_run(cfg, stack, sequence, done, app_id=app_id))
    assert first.counts["hl7v2.duplicate"] == 1  # b's resend 0.4 s later
    assert first.counts["hl7v2.normalized"] == 3  # a, b, and a again 5 s later: its id was forgotten
    assert first.counts["dedup.forgotten"] == 4  # a's and b's first ids and HL7 control ids, at the late copy

    # A new worker recovers the table from its changelog: b's id must stay forgotten
    # (a tombstone was written). This copy is not late enough for b to expire again.
    # And a's late copy, sent again, is that very copy replayed: its id was swept (a tombstone)
    # and marked again in the same batch, and the restore must end with the mark (one producer
    # for both keeps that order; two made it a race, which this run does not provoke).
    def settled(p):
        return sum(p.counts.get(f"hl7v2.{k}", 0) for k in ("normalized", "duplicate", "replayed")) >= 2

    second = asyncio.run(
        _run(cfg, stack, [dict(b, received_at=t + 600), dict(a, received_at=t + 5_000)], settled, app_id=app_id)
    )
    assert second.counts.get("hl7v2.normalized", 0) == 1 and "hl7v2.duplicate" not in second.counts
    assert second.counts.get("hl7v2.replayed", 0) == 1


def test_normalized_records_name_the_raw_record_they_came_from(cfg, stack):
    """The ``pf-source`` header (schemas/headers.py) is the context barrier's exact target for a
    request's own feed: it must point at the raw record, on its topic, partition and offset."""
    raws = [raw_record("clinic-a", "hl7v2", oru_r01(control_id=f"SRC{i}")) for i in range(2)]
    p = asyncio.run(_run(cfg, stack, raws, lambda p: p.counts.get("record.Observation", 0) >= 6))
    c = Consumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([f"{cfg.topic_prefix}.norm.observation"])
    sources: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(sources) < 6:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                src = headers.source_of(msg.headers())
                assert src is not None, msg.headers()
                assert msg.partition() == src[1]  # one practice, one partition
                sources.append(src)
    finally:
        c.close()
    raw_topic = f"{cfg.topic_prefix}.raw.hl7v2"
    assert sorted(set(sources)) == [(raw_topic, sources[0][1], 0), (raw_topic, sources[0][1], 1)]
    assert p.counts["hl7v2.normalized"] == 2


def test_a_batch_the_normalizer_handles_again_adds_no_clickhouse_rows(cfg, stack):
    """Issue 8's rewritten outcomes: a worker killed after a batch's outputs were confirmed and
    before its de-dup marks were handles the batch again and sends the same outputs at new
    offsets (the chaos harness: 9-30 of 1,200 messages; raw ``records`` rows 5,101 for 5,067
    keys). Here the second pass is a second worker app over the same raw topic: its de-dup table
    and offsets are new, so it handles every raw message again, as after such a crash. Kafka
    then holds every output twice; ClickHouse holds each once, raw counts included, because
    each copy names the raw record and output it came from (pf-source, pf-seq)."""
    raws = [raw_record("clinic-a", "hl7v2", oru_r01(control_id=f"AGAIN{i}", mrn=f"MRN20{i}")) for i in range(3)]
    sink = ClickHouseSink(cfg.chdb_dsn)
    try:
        first = asyncio.run(
            _run(cfg, stack, raws, lambda p: p.counts.get("clickhouse.observations", 0) >= 9, sink=sink)
        )
    finally:
        sink.close()  # chdb: one engine path per process; the second run opens its own
    assert first.counts["hl7v2.normalized"] == 3
    sink = ClickHouseSink(cfg.chdb_dsn)
    try:
        before = {
            t: sink.query(f"SELECT count() FROM {{db}}.{t}")[0][0] for t in ("records", "observations", "flow_events")
        }
        again = asyncio.run(
            _run(
                cfg,
                stack,
                [],
                lambda p: p.counts.get("hl7v2.normalized", 0) >= 3 and p.counts.get("clickhouse.observations", 0) >= 18,
                sink=sink,
                app_id=f"{cfg.consumer_group}-again",
            )
        )
        assert again.counts["hl7v2.normalized"] == 3  # handled again, not recognised as replays
        copies = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.observation", again.serde, 18)
        assert len(copies) == 18  # every output twice on the wire
        after = {t: sink.query(f"SELECT count() FROM {{db}}.{t}")[0][0] for t in before}
        final = {t: sink.query(f"SELECT count() FROM {{db}}.{t} FINAL")[0][0] for t in before}
        assert before["observations"] == 9
        assert after == before == final, (before, after, final)
        origins = sink.query("SELECT DISTINCT origin_topic FROM {db}.observations")
        assert origins == [(f"{cfg.topic_prefix}.raw.hl7v2",)]
    finally:
        sink.close()
