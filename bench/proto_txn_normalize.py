"""Prototype: the normalize hop on librdkafka with Kafka transactions, measured (issue 8).

Issue 8 leaves two targets open that share one next step: the worker's throughput (it drains
~350 msg/s at ~2.7 CPU-ms per message; the target is 3,000 msg/s and 0.3 ms) and exactly once
on the wire (a worker killed between a batch's confirmed outputs and its de-dup marks writes
the outputs again; `bench/CHAOS.md`). Kafka transactions would make a batch's outputs, de-dup
marks and input offsets one atomic write, but ``send_offsets_to_transaction`` takes a
librdkafka consumer's group metadata, which Faust's aiokafka consumer cannot give. So the raw
topics would have to be read by a librdkafka consumer, outside Faust's agents.

Before building that, this measures what the first hop would cost on it. It is not the worker
and ships nothing; it runs the worker's real normalize step over the e2e benchmark's message
mix and writes the same fan-out per input (normalized records, handoff items, one flow event,
the audit events, one de-dup mark on a compacted topic), Avro-encoded against the registry:

* ``transactional``: a ``read_committed`` consumer and a transactional producer; per batch
  ``begin_transaction``, every output and mark, ``send_offsets_to_transaction``, ``commit``.
* ``idempotent``: the same with the worker's current commit rule (outputs confirmed, then the
  marks confirmed, then the offsets committed), for comparison.

It reports msg/s and CPU-ms per message (the whole process: librdkafka's threads included)
next to the bare normalizer's CPU-ms per message, and checks that a ``read_committed`` reader
sees exactly the outputs it expects.

    .venv/bin/python bench/proto_txn_normalize.py [--messages 20000] [--batch 500]

``--stages`` measures the hop's steps apart instead (``stage_costs``: reading a record, decoding
it, building and encoding the outputs, producing them), in ``bench/results/proto_stages.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e.messages import PARTITIONS, mix, normalizer_rates  # noqa: E402  (the e2e bench's message mix)


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread (librdkafka's included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def load_raw(bootstrap: str, serde: Any, prefix: str, msgs: list[tuple[str, bytes]]) -> str:
    """Write ``msgs`` as RawMessage records on ``<prefix>.raw.hl7v2``, as the gateway does."""
    from confluent_kafka import Producer

    from practiceflow.processors.hl7.normalize import normalize_hl7
    from practiceflow.streams import catalog

    spec = catalog.BY_SUFFIX["raw.hl7v2"]
    topic = spec.name(prefix)
    p = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"}
    )
    now = int(time.time() * 1000)
    for practice, payload in msgs:
        mid = normalize_hl7(payload, practice, 0).message_id
        raw = {
            "practice_id": practice,
            "feed": "hl7v2",
            "message_id": mid,
            "received_at": now,
            "content_type": "x-application/hl7-v2+er7",
            "payload": payload,
            "headers": {},
        }
        value = serde.encode(f"{topic}-value", spec.record_type, raw)
        while True:
            try:
                p.produce(topic, value, f"{practice}/{mid}".encode(), catalog.partition_for(practice, PARTITIONS))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(60)
    return topic


class Fanout:
    """The worker's outputs for one normalized input (streams/normalize_agent.py), encoded."""

    def __init__(self, serde: Any, prefix: str) -> None:
        from practiceflow.streams import catalog

        self.serde = serde
        self.prefix = prefix
        self.catalog = catalog

    def _spec(self, suffix: str) -> tuple[str, str]:
        spec = self.catalog.BY_SUFFIX[suffix]
        return spec.name(self.prefix), spec.record_type

    def outputs(self, raw: dict[str, Any]) -> list[tuple[str, bytes, bytes]]:
        from practiceflow.processors.audit import audit_event
        from practiceflow.processors.dispatch import handoffs_for, normalize_raw

        practice, mid = raw["practice_id"], raw["message_id"]
        result = normalize_raw(raw)
        now = int(time.time() * 1000)
        out: list[tuple[str, bytes, bytes]] = []
        for rec in result.records:
            topic, rtype = self._spec(self.catalog.NORMALIZED[rec.record_type])
            rec.value.setdefault("source", {})["raw_topic"] = f"{self.prefix}.raw.hl7v2"
            out.append((topic, rec.key.encode(), self.serde.encode(f"{topic}-value", rtype, rec.value)))
        source = f"hl7v2/{mid}@{raw['received_at']}"
        handoff_topic, handoff_type = self._spec("handoff")
        audit_topic, audit_type = self._spec("audit.in")
        events = []
        for seq, item in enumerate(handoffs_for(result, practice, now), start=1):
            out.append(
                (
                    handoff_topic,
                    item.key.encode(),
                    self.serde.encode(f"{handoff_topic}-value", handoff_type, item.value),
                )
            )
            events.append((seq, "handoff_created", "HandoffItem", item.value["item_id"]))
        events.append((0, "normalized", "RawMessage", mid))
        for seq, action, etype, eid in events:
            ev = audit_event(
                practice,
                actor="practiceflow.worker",
                action=action,
                entity_type=etype,
                entity_id=eid,
                reason="prototype",
                at=now,
                source=source,
                seq=seq,
            )
            out.append((audit_topic, practice.encode(), self.serde.encode(f"{audit_topic}-value", audit_type, ev)))
        flow_topic, flow_type = self._spec("analytics.flow")
        flow = {
            "practice_id": practice,
            "message_id": mid,
            "feed": "hl7v2",
            "stage": "normalized",
            "record_type": None,
            "records": len(result.records),
            "latency_ms": None,
            "at": now,
        }
        out.append(
            (flow_topic, f"{practice}/{mid}".encode(), self.serde.encode(f"{flow_topic}-value", flow_type, flow))
        )
        return out


def run_mode(mode: str, bootstrap: str, serde: Any, prefix: str, raw_topic: str, n: int, batch: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from practiceflow.streams import catalog

    group = f"proto-{mode}-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    pconf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1024 * 1024,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
    }
    if mode == "transactional":
        pconf["transactional.id"] = f"{group}-0"
    producer = Producer(pconf)
    if mode == "transactional":
        producer.init_transactions(30)
    marks_topic = f"{prefix}.proto-seen"
    fan = Fanout(serde, prefix)
    consumer.subscribe([raw_topic])
    done, outputs, batches = 0, 0, 0
    t0 = c0 = None
    try:
        while done < n:
            msgs = consumer.consume(batch, timeout=1.0)
            msgs = [m for m in msgs if m.error() is None]
            if not msgs:
                continue
            if t0 is None:
                t0, c0 = time.perf_counter(), cpu_seconds()
            if mode == "transactional":
                producer.begin_transaction()
            marks = []
            for m in msgs:
                raw = serde.decode(m.value(), catalog.BY_SUFFIX["raw.hl7v2"].record_type)
                for topic, key, value in fan.outputs(raw):
                    producer.produce(topic, value, key, catalog.partition_for(raw["practice_id"], PARTITIONS))
                    outputs += 1
                seen = f"{raw['practice_id']}/hl7v2/{raw['message_id']}"
                marks.append((seen, raw["received_at"], raw["practice_id"]))
                producer.poll(0)
            if mode != "transactional":
                producer.flush(30)  # 1. outputs confirmed
            for key, at, practice in marks:
                producer.produce(
                    marks_topic, str(at).encode(), key.encode(), catalog.partition_for(practice, PARTITIONS)
                )
            positions = consumer.position(consumer.assignment())
            if mode == "transactional":
                producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
                producer.commit_transaction(30)
            else:
                producer.flush(30)  # 2. marks confirmed
                consumer.commit(
                    offsets=[TopicPartition(p.topic, p.partition, p.offset) for p in positions], asynchronous=False
                )
            done += len(msgs)
            batches += 1
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0  # type: ignore[operator]
    finally:
        consumer.close()
        producer.flush(10)
    return {
        "messages": done,
        "batches": batches,
        "outputs": outputs,
        "outputs_per_message": round(outputs / done, 2),
        "msgs_per_s": round(done / wall, 1),
        "cpu_ms_per_msg": round(cpu * 1000 / done, 3),
    }


def stage_costs(bootstrap: str, serde: Any, prefix: str, raw_topic: str, n: int) -> dict[str, Any]:
    """CPU-ms per input of each step of the hop, measured apart on the same messages:

    * ``consume``: a librdkafka consumer fetching the ``n`` raw records (Python side + its threads);
    * ``decode``: their Avro decode;
    * ``normalize_and_encode``: ``Fanout.outputs`` (normalize, handoffs, audit and flow events,
      each output Avro-encoded);
    * ``produce``: handing those outputs to an idempotent, ``acks=all`` librdkafka producer and
      flushing (no per-message callback), also per output record.

    What a Python worker pays per Kafka record it writes or reads is what a budget of 0.3 CPU-ms
    per input has to be divided by."""
    from confluent_kafka import Consumer, Producer

    from practiceflow.streams import catalog

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"stages-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([raw_topic])
    values: list[bytes] = []
    c0 = cpu_seconds()
    while len(values) < n:
        values += [m.value() for m in consumer.consume(1000, timeout=1.0) if m.error() is None]
    consume = cpu_seconds() - c0
    consumer.close()
    rtype = catalog.BY_SUFFIX["raw.hl7v2"].record_type
    c0 = cpu_seconds()
    raws = [serde.decode(v, rtype) for v in values]
    decode = cpu_seconds() - c0
    fan = Fanout(serde, prefix)
    c0 = cpu_seconds()
    outs = [(raw["practice_id"], fan.outputs(raw)) for raw in raws]
    build = cpu_seconds() - c0
    records = sum(len(o) for _, o in outs)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1024 * 1024,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    c0 = cpu_seconds()
    for practice, out in outs:
        part = catalog.partition_for(practice, PARTITIONS)
        for topic, key, value in out:
            producer.produce(topic, value, key, part)
        producer.poll(0)
    producer.flush(60)
    produce = cpu_seconds() - c0
    ms = 1000 / len(values)
    return {
        "inputs": len(values),
        "records_written_per_input": round(records / len(values), 2),
        "cpu_ms_per_input": {
            "consume": round(consume * ms, 4),
            "decode": round(decode * ms, 4),
            "normalize_and_encode": round(build * ms, 4),
            "produce": round(produce * ms, 4),
        },
        "cpu_us_per_record_written": {
            "normalize_and_encode": round(build * 1e6 / records, 2),
            "produce": round(produce * 1e6 / records, 2),
        },
        "cpu_us_per_record_read": round((consume + decode) * 1e6 / len(values), 2),
    }


def create_marks_topic(bootstrap: str, name: str) -> None:
    """The de-dup marks' stand-in for the worker's table changelog: compacted, one per partition."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    spec = NewTopic(name, PARTITIONS, 1, config={"cleanup.policy": "compact"})
    for fut in admin.create_topics([spec]).values():
        fut.result(30)


def committed_count(bootstrap: str, topics: list[str]) -> int:
    """Records a read_committed reader sees on ``topics`` (transaction markers excluded)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"count-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
        }
    )
    try:
        total = 0
        for t in topics:
            for p in range(PARTITIONS):
                tp = TopicPartition(t, p)
                lo, hi = c.get_watermark_offsets(tp, timeout=10)
                if hi <= lo:
                    continue
                c.assign([TopicPartition(t, p, lo)])
                seen, deadline = 0, time.monotonic() + 60
                while time.monotonic() < deadline:
                    m = c.poll(0.5)
                    if m is None:
                        pos = c.position([tp])[0].offset
                        if pos >= hi:
                            break
                        continue
                    if m.error() is None:
                        seen += 1
                    if m.offset() >= hi - 1:
                        break
                total += seen
        return total
    finally:
        c.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--stages", action="store_true", help="only the per-step costs (stage_costs)")
    args = ap.parse_args(argv)

    from practiceflow.localstack.stack import LocalStack
    from practiceflow.settings import REPO_ROOT
    from practiceflow.streams.serde import AvroSerde, registry_client
    from practiceflow.streams.topics import create_topics

    work = Path(tempfile.mkdtemp(prefix="proto-txn-"))
    stack = LocalStack(work / "stack", cache_dir=REPO_ROOT / ".stack" / "cache")
    info = stack.start()
    result: dict[str, Any] = {"messages": args.messages, "batch": args.batch, "partitions": PARTITIONS}
    try:
        msgs = mix(0, args.messages)
        result["bare_normalizer"] = normalizer_rates(msgs[:5000])
        serde = AvroSerde(registry_client(info.registry_url))
        if args.stages:
            prefix = f"p{uuid.uuid4().hex[:6]}"
            create_topics(info.bootstrap, prefix, PARTITIONS, 1)
            raw_topic = load_raw(info.bootstrap, serde, prefix, msgs)
            stage_costs(info.bootstrap, serde, prefix, raw_topic, min(2000, args.messages))  # warm: schemas, caches
            prefix = f"p{uuid.uuid4().hex[:6]}"
            create_topics(info.bootstrap, prefix, PARTITIONS, 1)
            raw_topic = load_raw(info.bootstrap, serde, prefix, msgs)
            result["stages"] = stage_costs(info.bootstrap, serde, prefix, raw_topic, args.messages)
        for mode in () if args.stages else ("idempotent", "transactional"):
            prefix = f"p{uuid.uuid4().hex[:6]}"
            create_topics(info.bootstrap, prefix, PARTITIONS, 1)
            create_marks_topic(info.bootstrap, f"{prefix}.proto-seen")
            raw_topic = load_raw(info.bootstrap, serde, prefix, msgs)
            r = run_mode(mode, info.bootstrap, serde, prefix, raw_topic, args.messages, args.batch)
            from practiceflow.streams import catalog

            expected = r["outputs"]
            out_topics = sorted({s.name(prefix) for s in catalog.BY_SUFFIX.values() if s.kind.value != "raw"})
            r["outputs_read_committed"] = committed_count(info.bootstrap, out_topics)
            r["outputs_complete"] = r["outputs_read_committed"] == expected
            result[mode] = r
            print(json.dumps({mode: r}), flush=True)
    finally:
        stack.stop()
    out = args.out or HERE / "results" / ("proto_stages.json" if args.stages else "proto_txn_normalize.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    ok = args.stages or all(result[m]["outputs_complete"] for m in ("idempotent", "transactional"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
