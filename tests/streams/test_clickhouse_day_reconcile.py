"""A practice day through the real broker lands in ClickHouse exactly once although the
`practiceflow sink` process is SIGKILLed twice mid-stream (issue 13, Done-when 1; chdb).

Every topic the sink reads gets records (normalized observations and eligibility answers,
fax classifications, work items and their revisions, staff decisions, pilot comparisons,
drafts, command results, denial money, dead letters, flow events, the audit chain) for three practices. The
sink runs as the production command with small batches and SIGKILLs itself right after its
third committed batch (tests/streams/sink_kill_after.py: a fixed point, not a race with a lag
probe), is restarted, kills itself again three batches later, is restarted and left to drain. Then every
table reconciles with the topics: no Kafka position twice, every position of a message whose
table key is its own present, and FINAL equal to the distinct keys the records carry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from practiceflow.processors.audit import audit_event, chain
from practiceflow.processors.deadletter import dead_letter
from practiceflow.schemas import models
from practiceflow.sinks.clickhouse import TABLE_KEYS, ClickHouseSink, rows_for
from practiceflow.streams import catalog
from practiceflow.streams.clickhouse_sink import committed_lag, sink_topics
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics

pytestmark = pytest.mark.broker

T0 = 1_780_000_000_000  # 2026-05-28 08:53 UTC
PRACTICES = ("clinic-a", "clinic-b", "clinic-c")
PER_PRACTICE = 20  # messages of the day per practice; ~30 records each: ~600 in all


def _day() -> list[tuple[str, str, dict[str, Any], str]]:
    """(topic suffix, key, value, practice) for a small day of three practices."""
    out: list[tuple[str, str, dict[str, Any], str]] = []

    def add(suffix: str, key: str, record: models.AvroRecord, practice: str) -> None:
        out.append((suffix, key, record.model_dump(), practice))

    prev: dict[str, str | None] = dict.fromkeys(PRACTICES)
    for i in range(PER_PRACTICE):
        for p in PRACTICES:
            t = T0 + i * 90_000
            mid, pat = f"{p}-m{i}", f"MRN{i % 7}"
            src = models.SourceRef(feed="hl7v2", message_id=mid)
            for stage, dt in (("accepted", 0), ("normalized", 40)):
                add(
                    "analytics.flow",
                    f"{p}/{mid}",
                    models.FlowEvent(practice_id=p, message_id=mid, feed="hl7v2", stage=stage, records=2, at=t + dt),
                    p,
                )
            for k, code in enumerate(("2345-7", "2160-0")):
                add(
                    "norm.observation",
                    f"{p}/{pat}/o{i}.{k}",
                    models.Observation(
                        practice_id=p,
                        patient_id=pat,
                        observation_id=f"o{i}.{k}",
                        code=models.Coding(code=code),
                        value_type="NM",
                        value="5",
                        value_numeric=5.0,
                        source=src,
                    ),
                    p,
                )
            item = models.HandoffItem(
                practice_id=p,
                item_id=f"results:{mid}",
                workflow="results_review",
                queue="clinician",
                title="abnormal result",
                what_happened="x",
                patient_id=pat,
                created_at=t + 50,
                source=src,
                contract_version=2,
                kind="results.abnormal",
            )
            add("handoff", f"{p}/{item.item_id}", item, p)
            decision = models.StaffDecision(
                practice_id=p,
                decision_id=f"d-{mid}",
                item_id=item.item_id,
                item_revision=1,
                option="approve" if i % 4 else "reject",
                actor="u1",
                decided_at=t + 600_000,
            )
            add("decisions", f"{p}/{item.item_id}", decision, p)
            add(
                "pilot.comparisons",
                f"{p}/{item.item_id}",
                models.PilotComparison(
                    practice_id=p,
                    item_id=item.item_id,
                    workflow=item.workflow,
                    kind="results.abnormal",
                    queue=item.queue,
                    rule_id="results.abnormal",
                    rule_version="1",
                    staff_option=decision.option,
                    decision_id=decision.decision_id,
                    verdict="agree" if decision.option == "approve" else "disagree",
                    minutes=2.0,
                    minutes_saved=2.0 if decision.option == "approve" else 0.0,
                    decided_at=decision.decided_at,
                ),
                p,
            )
            done = item.model_copy(
                update={
                    "revision": 2,
                    "state": "done",
                    "outcome": decision.option,
                    "decision_id": decision.decision_id,
                    "updated_at": t + 600_500,
                }
            )
            add("handoff", f"{p}/{item.item_id}", done, p)
            chained = chain(
                prev[p],
                audit_event(
                    p, actor="worker", action="normalized", entity_type="message", entity_id=mid, reason="ok", at=t + 45
                ),
            )
            prev[p] = chained["hash"]
            add("audit", p, models.AuditEvent(**chained), p)
            if i % 3 == 0:
                add(
                    "drafts",
                    f"{p}/dr-{mid}",
                    models.Draft(
                        practice_id=p,
                        draft_id=f"dr-{mid}",
                        item_id=item.item_id,
                        workflow="refill",
                        kind="fhir.MedicationRequest",
                        content_type="application/fhir+json",
                        body="{}",
                        created_at=t,
                    ),
                    p,
                )
                add(
                    "cmd.results",
                    f"{p}/c-{mid}",
                    models.CommandResult(
                        practice_id=p,
                        command_id=f"c-{mid}",
                        kind="eligibility",
                        workflow="intake",
                        outcome="ok",
                        latency_ms=40.0,
                        completed_at=t + 900,
                    ),
                    p,
                )
                add(
                    "norm.eligibility",
                    f"{p}/{pat}/r-{mid}",
                    models.EligibilityResponse(
                        practice_id=p,
                        response_id=f"r-{mid}",
                        patient_id=pat,
                        payer_id="P1",
                        active=True,
                        source=models.SourceRef(feed="x12", message_id=f"x-{mid}"),
                    ),
                    p,
                )
            if i % 6 == 0:
                add(
                    "norm.immunization",
                    f"{p}/{pat}/im-{mid}",
                    models.Immunization(
                        practice_id=p,
                        patient_id=pat,
                        immunization_id=f"im-{mid}",
                        vaccine=models.Coding(code="141"),
                        source=src,
                    ),
                    p,
                )
            if i % 4 == 1:
                add(
                    "norm.fax_classification",
                    f"{p}/fx-{mid}",
                    models.FaxClassification(
                        practice_id=p,
                        classification_id=f"fx-{mid}",
                        document_id=f"doc-{mid}",
                        doc_class="referral",
                        kind="referral.new",
                        confidence=0.9,
                        abstained=False,
                        queue="referrals",
                        patient_match="matched",
                        source=models.SourceRef(feed="fax", message_id=f"f-{mid}"),
                    ),
                    p,
                )
                dl = dead_letter(
                    p,
                    "hl7v2",
                    "normalize",
                    "bad_segment",
                    "bad",
                    f"x{mid}".encode(),
                    failed_at=t,
                    message_id=f"bad-{mid}",
                )
                add("dlq.hl7v2", f"{p}/bad-{mid}", models.DeadLetter(**dl), p)
            if i % 5 == 2:
                for state, rec in (("open", 0.0), ("recovered", 50.0)):  # the entry, then its recovery
                    add(
                        "denials.ledger",
                        f"{p}/e-{mid}",
                        models.DenialLedgerEntry(
                            practice_id=p,
                            entry_id=f"e-{mid}",
                            claim_id=f"cl-{mid}",
                            adjudication_id=f"a-{mid}",
                            payer_id="P1",
                            category="coding",
                            denied=50.0,
                            recoverable=50.0,
                            recovered=rec,
                            state=state,
                            updated_at=t + (0 if state == "open" else 86_400_000),
                            source=models.SourceRef(feed="x12", message_id=f"835-{mid}"),
                        ),
                        p,
                    )
    return out


def _key(values) -> tuple:
    """A sort key comparable between a row builder's dict and ClickHouse's answer (times as epoch ms)."""
    out = []
    for v in values:
        if isinstance(v, datetime):
            v = round((v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp() * 1000)
        out.append(v)
    return tuple(out)


def _produce(stack, cfg) -> list[tuple[str, dict[str, Any]]]:
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    sent = []
    for suffix, key, value, practice in _day():
        spec = catalog.BY_SUFFIX[suffix]
        topic = spec.name(cfg.topic_prefix)
        producer.send(topic, key, serde.encode(f"{topic}-value", spec.record_type, value), practice)
        sent.append((spec.record_type, value))
    producer.close()
    return sent


def _messages(bootstrap: str, topics: list[str]) -> dict[str, int]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        out: dict[str, int] = {}
        for topic in topics:
            meta = probe.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                lo, hi = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                out[topic] = out.get(topic, 0) + hi - lo
        return out
    finally:
        probe.close()


KILL_AFTER = 3  # committed batches per run before the sink SIGKILLs itself
BATCH = 15  # messages per batch at most (--batch-size)


def _sink_process(stack, cfg, dsn: str, group: str, tmp_path, kill_after: int | None = None) -> subprocess.Popen:
    """The production ``practiceflow sink``; with ``kill_after`` it SIGKILLs itself right after
    that many committed batches (tests/streams/sink_kill_after.py)."""
    env = dict(
        os.environ,
        PRACTICEFLOW_KAFKA_BOOTSTRAP=stack.bootstrap,
        PRACTICEFLOW_SCHEMA_REGISTRY_URL=stack.registry_url,
        PRACTICEFLOW_TOPIC_PREFIX=cfg.topic_prefix,
        PRACTICEFLOW_TOPIC_PARTITIONS=str(cfg.topic_partitions),
        PRACTICEFLOW_CLICKHOUSE_DSN=dsn,
        PRACTICEFLOW_STATE_DIR=str(tmp_path),
    )
    if kill_after is None:
        cmd = [sys.executable, "-m", "practiceflow.cli"]
    else:
        cmd = [sys.executable, str(Path(__file__).with_name("sink_kill_after.py")), str(kill_after)]
    cmd += ["sink", "--group", group, "--batch-size", str(BATCH), "--batch-seconds", "0.2"]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)


def test_a_day_reconciles_exactly_after_the_sink_is_killed_twice_mid_stream(cfg, stack, tmp_path):
    sent = _produce(stack, cfg)
    topics = list(sink_topics(cfg.topic_prefix))
    messages = _messages(stack.bootstrap, topics)
    total = sum(messages.values())
    assert total == len(sent) >= 500
    dsn = f"chdb://{tmp_path / 'ch'}"
    group = f"day-{cfg.topic_prefix}"

    def lag_of() -> int:
        return committed_lag(stack.bootstrap, group, topics)

    lags = []
    for _ in range(2):  # two SIGKILLs, each right after the sink's third committed batch of its run
        proc = _sink_process(stack, cfg, dsn, group, tmp_path, kill_after=KILL_AFTER)
        assert proc.wait(300) == -signal.SIGKILL  # it killed itself (a generous guard, not a speed check)
        lags.append(lag_of())  # read with the sink dead: exactly what its commits left
    # each run committed exactly KILL_AFTER batches of 1..BATCH new messages, so both kills left
    # work behind them, and the second run went on from where the first stopped
    assert total - KILL_AFTER * BATCH <= lags[0] < total, lags
    assert lags[0] - KILL_AFTER * BATCH <= lags[1] < lags[0], lags
    proc = _sink_process(stack, cfg, dsn, group, tmp_path)
    try:
        deadline = time.monotonic() + 240
        while lag_of() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert lag_of() == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()

    want_rows: Counter = Counter()
    want_keys: dict[str, set] = defaultdict(set)
    for record_type, value in sent:
        for table, row in rows_for(record_type, value, 0):
            want_rows[table] += 1
            want_keys[table].add(_key(row[c] for c in TABLE_KEYS[table]))
    sink = ClickHouseSink(dsn)
    try:
        for table in TABLE_KEYS:
            key = ", ".join(TABLE_KEYS[table])
            raw, positions, final = sink.query(
                f"SELECT count(), uniqExact(kafka_topic, kafka_partition, kafka_offset), "
                f"(SELECT count() FROM {{db}}.{table} FINAL) FROM {{db}}.{table}"
            )[0]
            assert raw == positions, f"{table}: a Kafka message written twice"
            assert final == len(want_keys[table]), (table, final, len(want_keys[table]))
            if want_rows[table] == len(want_keys[table]):  # one message per key: every message is a row
                assert raw == want_rows[table], (table, raw, want_rows[table])
            else:  # versions of one key (work items, ledger entries): a merge may have collapsed some
                assert len(want_keys[table]) <= raw <= want_rows[table], (table, raw)
            got_keys = {_key(r) for r in sink.query(f"SELECT {key} FROM {{db}}.{table} FINAL")}
            assert got_keys == want_keys[table], table
        assert {t for t in TABLE_KEYS if want_rows[t]} == set(TABLE_KEYS)  # the day fed every table
        # the dashboards read the same day
        assert sink.query(
            "SELECT uniqExactMerge(messages) FROM {db}.feed_throughput_minute WHERE stage = 'accepted'"
        ) == [(len(PRACTICES) * PER_PRACTICE,)]
        assert sink.query("SELECT sum(decisions) FROM {db}.pilot_agreement_daily") == [(len(PRACTICES) * PER_PRACTICE,)]
        assert sink.query("SELECT sum(recovered) FROM {db}.denial_dollars_monthly")[0][0] > 0
    finally:
        sink.close()
