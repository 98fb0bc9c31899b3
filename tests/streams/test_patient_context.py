"""The patient context through the real broker: HL7 ADT + ORU + RDE and FHIR -> one context per patient.

* the barrier: right after the inputs are accepted (no waiting on counters),
  ``caught_up`` + ``context_for`` see the encounter, the observations by LOINC and the
  active medication order; a FHIR observation filed under the patient's FHIR id moves
  to the MRN when the FHIR Patient links the two;
* an ambiguous match (twins) gives a front-desk candidates item, once, however often
  the input is replayed;
* a worker killed with SIGKILL mid-stream and restarted recovers its tables: every
  patient's context is complete, and no work item is doubled.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from practiceflow.jobs.run_file import raw_record
from practiceflow.processors.context.matching import from_intake
from practiceflow.processors.hl7.normalize import message_id_for
from practiceflow.sampleday.hl7 import adt_a04, oru_r01, rde_o11
from practiceflow.sampleday.people import Person, make_people
from practiceflow.settings import REPO_ROOT
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.normalize_agent import Outbox
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from practiceflow.streams.workflows.patient_match import resolve_patient
from tests.streams.test_crash_restart import TopicReader, _worker_env
from tests.streams.test_pipeline import consume_all

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]


async def _send(pipeline: Pipeline, producer: DurableProducer, raws: list[dict]) -> None:
    for raw in raws:
        topic = f"{pipeline.prefix}.raw.{raw['feed']}"
        await producer.send_async(
            topic,
            f"{raw['practice_id']}/{raw['message_id']}",
            pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
            raw["practice_id"],
        )


def _adt_visit(p: Person, control: str, rng: random.Random) -> str:
    """An ADT^A03 (discharge) whose PV1 carries a visit number and admit/discharge times: an Encounter."""
    pv1 = ["PV1"] + [""] * 45
    pv1[1:4] = ["1", "O", "MAIN^^^DEMO"]
    pv1[7] = "1111111112^Welby^Marcus"
    pv1[19] = f"V{control}"
    pv1[44], pv1[45] = "20261101093000", "20261101101500"
    segs = adt_a04(p, control, "20261101090000", rng).split("\r")
    segs = [
        "|".join(pv1) if s.startswith("PV1|") else s.replace("ADT^A04", "ADT^A03").replace("EVN|A04", "EVN|A03")
        for s in segs
    ]
    return "\r".join(segs)


def _hl7_history(practice: str, p: Person, n: int, rng: random.Random) -> list[dict]:
    msgs = [
        _adt_visit(p, f"A{n:05d}", rng),
        oru_r01(p, f"O{n:05d}", "20261101100000", rng, abnormal=False),
        rde_o11(p, f"R{n:05d}", "20261101110000", rng),
    ]
    return [raw_record(practice, "hl7v2", m.encode()) for m in msgs]


def _fhir(practice: str, resource: dict) -> dict:
    return raw_record(practice, "fhir", json.dumps(resource).encode())


FHIR_OBS = {
    "resourceType": "Observation",
    "id": "k-f1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
    "subject": {"reference": "Patient/f-abc"},
    "effectiveDateTime": "2026-11-20T08:00:00Z",
    "valueQuantity": {"value": 1.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
}
FHIR_PATIENT = {
    "resourceType": "Patient",
    "id": "f-abc",
    "identifier": [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "value": "MRNF1",
        }
    ],
    "name": [{"family": "Lindqvist", "given": ["Sage"]}],
    "gender": "female",
    "birthDate": "1961-04-09",
}


def test_context_holds_encounter_labs_and_orders_as_soon_as_the_barrier_passes(cfg, stack):
    practice = "ctx-a"
    rng = random.Random(7)
    people = make_people(3, seed=11)
    raws = [r for i, p in enumerate(people) for r in _hl7_history(practice, p, i, rng)]
    raws += [_fhir(practice, FHIR_OBS), _fhir(practice, FHIR_PATIENT)]
    partition = catalog.partition_for(practice, cfg.topic_partitions)

    async def run():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            await _send(pipeline, producer, raws)
            # no waiting on counters: the barrier alone must make the context complete
            assert await pipeline.contexts.caught_up(partition, timeout=120)
            return pipeline, {p.mrn: pipeline.contexts.context_for(practice, p.mrn) for p in people} | {
                "MRNF1": pipeline.contexts.context_for(practice, "MRNF1"),
                "fhir|f-abc": pipeline.contexts.context_for(practice, "fhir|f-abc"),
            }
        finally:
            producer.close()
            await runner.stop(pipeline)

    pipeline, ctx = asyncio.run(run())
    for p in people:
        c = ctx[p.mrn]
        assert c is not None, p.mrn
        assert c.patient is not None and c.patient["family_name"] == p.family
        assert c.patient_id == p.mrn
        visit = c.last_completed_visit()
        assert visit is not None and visit["attending_provider"] and visit["discharge_at"], c.encounters
        assert c.last_completed_visit(provider=visit["attending_provider"]) == visit
        assert len(c.observations) == 4  # the ORU's four LOINC codes
        for code, history in c.observations.items():
            latest = history[0]
            assert latest["code"]["code"] == code and latest["units"] and latest["reference_range"]
            assert latest["effective_at"] and latest["value_numeric"] is not None
        (order,) = c.active_medication_orders()
        assert order["medication"]["code"] in {"314076", "860975", "617312", "197361"}  # RxNorm
        assert order["refills"] == 3 and order["quantity"]
        assert c.active_coverages(), "the ADT's IN1"
    # the FHIR observation came under the FHIR id; the FHIR Patient linked it to the MRN
    assert ctx["fhir|f-abc"] is None
    merged = ctx["MRNF1"]
    assert merged is not None and merged.latest_observation("2160-0")["value_numeric"] == 1.1
    assert pipeline.counts.get("context.unfiled", 0) == 0


def _read_with_headers(bootstrap: str, topic: str, serde, practice: str) -> list[tuple[dict, list]]:
    """Every record of ``practice`` on ``topic`` so far, decoded, with its headers."""
    from practiceflow.streams.positions import watermarks
    from practiceflow.streams.topic_reader import Span, read_spans, reader_consumer

    c = reader_consumer(bootstrap, "test-folded")
    try:
        spans = []
        for partition in c.list_topics(topic, timeout=30).topics[topic].partitions:
            low, high = watermarks(c, TopicPartition(topic, partition), timeout=30)
            spans.append(Span(topic, partition, low, high))
        out = [(serde.decode(m.value()), m.headers() or []) for m in read_spans(c, spans, 60) if m.value()]
    finally:
        c.close()
    return [(v, h) for v, h in out if v["practice_id"] == practice]


def test_the_normalizer_folds_each_inputs_context_records_in_its_own_pass(cfg, stack):
    """All of an input's records are in the normalizer's hand at once: it folds them into the
    context tables in the batch that writes them, and marks them (``pf-context: <its group>``) so the
    context agent, which sees them topic by topic, does not fold them again. Medication orders,
    which prior auth follows, stay with the agent, unmarked. A record without the mark (written by
    an earlier version) is still folded by the agent."""
    practice = "ctx-up"
    rng = random.Random(5)
    people = make_people(2, seed=23)
    raws = [r for i, p in enumerate(people) for r in _hl7_history(practice, p, i, rng)]
    partition = catalog.partition_for(practice, cfg.topic_partitions)
    prefix = cfg.topic_prefix
    context_topics = [f"{prefix}.{catalog.NORMALIZED[rt]}" for rt in ("Patient", "Encounter", "Observation")]

    async def run():
        create_topics(stack.bootstrap, prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            await _send(pipeline, producer, raws)
            assert await pipeline.contexts.caught_up(partition, timeout=120)
            written = {t: _read_with_headers(stack.bootstrap, t, pipeline.serde, practice) for t in context_topics}
            # prior auth follows medication orders: the agent folds them and hands them on, unmarked
            med_topic = f"{prefix}.{catalog.NORMALIZED['MedicationOrder']}"
            orders = _read_with_headers(stack.bootstrap, med_topic, pipeline.serde, practice)
            assert len(orders) == len(people) and all(
                not any(name == "pf-context" for name, _ in headers) for _v, headers in orders
            ), orders
            folded_upstream = pipeline.counts.get("context.skipped_folded_upstream", 0)
            # an Observation as an earlier version wrote it: no mark, so the agent folds it
            obs_topic = f"{prefix}.{catalog.NORMALIZED['Observation']}"
            legacy = dict(written[obs_topic][0][0], observation_id="legacy-obs-1", value_numeric=42.0)
            legacy["code"] = dict(legacy["code"], code="9999-9")
            plain = Producer({"bootstrap.servers": stack.bootstrap})
            plain.produce(
                obs_topic,
                pipeline.serde.encode(f"{obs_topic}-value", "Observation", legacy),
                f"{practice}/{legacy['patient_id']}/legacy-obs-1".encode(),
                partition=partition,
            )
            assert plain.flush(30) == 0
            return pipeline, written, folded_upstream, legacy
        finally:
            producer.close()

    async def legacy_folded(pipeline, legacy):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert await pipeline.contexts.caught_up(partition, timeout=60)
            ctx = pipeline.contexts.context_for(practice, legacy["patient_id"])
            if ctx is not None and ctx.latest_observation("9999-9"):
                return ctx
            await asyncio.sleep(0.2)
        return None

    async def both():
        pipeline, written, folded_upstream, legacy = await run()
        try:
            legacy_ctx = await legacy_folded(pipeline, legacy)
            contexts = {p.mrn: pipeline.contexts.context_for(practice, p.mrn) for p in people}
        finally:
            await runner.stop(pipeline)
        return written, folded_upstream, legacy_ctx, contexts, pipeline.app.conf.id

    written, folded_upstream, legacy_ctx, contexts, pipeline_group = asyncio.run(both())
    records = [r for rows in written.values() for r in rows]
    mark = ("pf-context", pipeline_group.encode())
    assert records and all(mark in headers for _v, headers in records), [h for _v, h in records]
    # the context agent skipped every one of them (and only counted them)
    assert folded_upstream >= len(records)
    for p in people:
        c = contexts[p.mrn]
        assert c is not None and c.patient is not None and c.last_completed_visit() is not None
        assert len(set(c.observations) - {"9999-9"}) == 4  # the ORU's four LOINC codes
        assert c.active_medication_orders()
    assert legacy_ctx is not None, "a record without the mark was not folded by the context agent"
    assert legacy_ctx.latest_observation("9999-9")["value_numeric"] == 42.0


def test_ambiguous_match_gives_one_candidates_item(cfg, stack):
    practice = "ctx-b"
    rng = random.Random(3)
    twin_a = make_people(1, seed=5)[0]
    twin_a = Person(**{**twin_a.__dict__, "mrn": "MRNT1", "given": "Robert", "family": "Smith", "sex": "M"})
    twin_b = Person(**{**twin_a.__dict__, "mrn": "MRNT2", "given": "Roberta", "sex": "F"})
    raws = [
        raw_record(practice, "hl7v2", adt_a04(p, f"T{i}", "20261101090000", rng).encode())
        for i, p in enumerate((twin_a, twin_b))
    ]
    partition = catalog.partition_for(practice, cfg.topic_partitions)
    form = {
        "practice_id": practice,
        "submission_id": "sub-1",
        "family_name": "Smith",
        "given_name": "R",
        "birth_date": twin_a.dob_iso,
        "phone": twin_a.phone,
        "answers": {},
    }

    async def run():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            await _send(pipeline, producer, raws)
            assert await pipeline.contexts.caught_up(partition, timeout=120)
            results = []
            for _ in range(2):  # the same input handled twice (a replay): the same item, not a second
                outbox = Outbox()
                results.append(
                    await resolve_patient(
                        pipeline,
                        outbox,
                        practice_id=practice,
                        subject_type="IntakeForm",
                        subject_id="sub-1",
                        record_key=f"{practice}/sub-1",
                        probe=from_intake(form),
                        source={"feed": "portal", "message_id": "m-sub-1"},
                        now=1_764_000_000_000,
                    )
                )
                await outbox.confirm()
            return pipeline, results
        finally:
            producer.close()
            await runner.stop(pipeline)

    pipeline, results = asyncio.run(run())
    assert [r.status for r in results] == ["ambiguous", "ambiguous"]
    assert {c.patient_id for c in results[0].candidates} == {"MRNT1", "MRNT2"}
    items = [
        v
        for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", pipeline.serde, 2, timeout=15)
        if v["workflow"] == "patient_match"
    ]
    assert len(items) == 2 and items[0] == items[1]  # written twice, one item (same id, same revision)
    item = items[0]
    assert (item["kind"], item["queue"], item["state"], item["patient_id"]) == (
        "patient_match.ambiguous",
        "front_desk",
        "open",
        None,
    )
    assert {o["target"] for o in item["options"] if o["option"] == "pick"} == {"MRNT1", "MRNT2"}
    assert any(o["option"] == "new_patient" for o in item["options"])
    cands = [e for e in item["evidence"] if e["assessment"] == "candidate"]
    assert {e["record_key"] for e in cands} == {f"{practice}/MRNT1", f"{practice}/MRNT2"}
    assert all(0.7 <= float(e["value"]) < 1.0 for e in cands)
    assert item["produced_by"]["rule_id"] == "patient_match.demographic"
    assert "Smith" not in item["title"] and "Smith" not in item["what_happened"]  # no PHI in the text


# --------------------------------------------------------------------------- kill -9
N_PATIENTS = 40
PRACTICES = ["kc-a", "kc-b", "kc-c"]


def _start_worker(cfg, stack, log: Path) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "streams" / "crash_worker.py")],
        env=_worker_env(cfg, stack),
        cwd=cfg.state_dir,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def test_kill_9_mid_stream_recovers_the_context_tables(cfg, stack, tmp_path):
    prefix = cfg.topic_prefix
    create_topics(stack.bootstrap, prefix, cfg.topic_partitions, 1)
    serde = AvroSerde(registry_client(stack.registry_url))
    raw_topic = f"{prefix}.raw.hl7v2"
    subject = f"{raw_topic}-value"
    serde.register(subject, "RawMessage")
    rng = random.Random(1)
    people = make_people(N_PATIENTS, seed=23)
    plan: list[tuple[str, Person, dict]] = []
    for i, p in enumerate(people):
        practice = PRACTICES[i % len(PRACTICES)]
        for raw in _hl7_history(practice, p, i, rng):
            plan.append((practice, p, raw))
    # a second ORU per patient, later, so every context must hold two dates per code
    for i, p in enumerate(people):
        practice = PRACTICES[i % len(PRACTICES)]
        msg = oru_r01(p, f"P{i:05d}", "20261115100000", rng, abnormal=True)
        plan.append(
            (
                practice,
                p,
                raw_record(
                    practice, "hl7v2", msg.encode(), message_id=message_id_for("DEMOEHR", "DEMO CLINIC", f"P{i:05d}")
                ),
            )
        )

    def produce() -> None:
        prod = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for n, (practice, _p, raw) in enumerate(plan):
            prod.produce(
                raw_topic,
                key=f"{practice}/{raw['message_id']}".encode(),
                value=serde.encode(subject, "RawMessage", raw),
                partition=catalog.partition_for(practice, cfg.topic_partitions),
            )
            prod.poll(0)
            if n % 10 == 9:
                time.sleep(0.1)
        assert prod.flush(30) == 0

    changelog = _Counter(stack.bootstrap, f"{cfg.consumer_group}-patient-context-changelog")
    log = Path(os.environ.get("PRACTICEFLOW_TEST_WORKER_LOG") or tmp_path / "worker.log")
    worker = _start_worker(cfg, stack, log)
    sender = threading.Thread(target=produce, daemon=True)
    sender.start()
    try:
        # kill once the context agent has written a good part of its table
        deadline = time.monotonic() + 180
        while changelog.count() < N_PATIENTS // 2 and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = _start_worker(cfg, stack, log)
        sender.join(120)
        time.sleep(5)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        changelog.close()

    async def check():
        # a fresh worker of the same group and state dir: local RocksDB + changelog tail
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        try:
            for part in {catalog.partition_for(pr, cfg.topic_partitions) for pr in PRACTICES}:
                assert await pipeline.contexts.caught_up(part, timeout=240)
            return {
                (i, p.mrn): pipeline.contexts.context_for(PRACTICES[i % len(PRACTICES)], p.mrn)
                for i, p in enumerate(people)
            }
        finally:
            await runner.stop(pipeline)

    contexts = asyncio.run(check())
    incomplete = []
    for (_i, mrn), c in contexts.items():
        if c is None or len(c.active_medication_orders()) != 1 or not c.encounters:
            incomplete.append(mrn)
            continue
        dates = {o["effective_at"][:10] for hist in c.observations.values() for o in hist}
        if dates != {"2026-11-01", "2026-11-15"}:
            incomplete.append(mrn)
    assert not incomplete, f"{len(incomplete)} contexts incomplete after the kill, e.g. {incomplete[:3]}"

    handoff = TopicReader(stack.bootstrap, f"{prefix}.handoff", serde)
    deadline = time.monotonic() + 20
    while len(handoff.values) < 2 * N_PATIENTS and time.monotonic() < deadline:
        handoff.poll()
    handoff.poll(2)
    handoff.close()
    ids = Counter(v["item_id"] for v in handoff.values)
    # one results-review item per ORU, whatever was replayed: re-writes keep the same id
    assert len(ids) == 2 * N_PATIENTS, (len(ids), 2 * N_PATIENTS)


class _Counter:
    """Counts the messages of a topic that may not exist yet (a table's changelog)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"check-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        self.consumer.subscribe([topic])
        self.n = 0

    def count(self) -> int:
        self.n += sum(1 for m in self.consumer.consume(num_messages=1000, timeout=0.5) if m.error() is None)
        return self.n

    def close(self) -> None:
        self.consumer.close()
