"""Refill triage end to end through the real broker.

HL7 ADT^A03 (a completed visit) + ORU^R01 (monitoring labs, vital signs) + RDE^O11 (the
prescription) for three patients, then their portal refill requests, all sent at once:
the refill agent waits for the patient context, then writes one work item per request
on ``handoff`` with the right class and evidence, a FHIR MedicationRequest draft for the
routine one on ``drafts``, and ``refill_triaged`` audit events. A request delivered
twice (a replay of the normalized topic) rewrites the same item: one item per request.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from practiceflow.jobs.run_file import raw_record
from practiceflow.sampleday import refills
from practiceflow.sampleday.people import make_people
from practiceflow.streams import catalog, fetching, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.streams.test_pipeline import consume_all

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

CASES = (0, 4, 8)  # routine lisinopril, lisinopril with K 5.9 (H), tramadol (controlled)


def _raws(practice: str):
    people = make_people(40, 7)[refills.FIRST :]
    d = date(2026, 11, 27)
    controls = iter(range(700001, 799999))
    history, requests = [], []
    events = refills.requests(make_people(40, 7), d, "2026-11-27T07:30:00Z")
    for i in CASES:
        for msg in refills.history(people[i], i, d, controls):
            history.append(raw_record(practice, "hl7v2", msg))
        _event, body, _ = events[i]
        rid = json.loads(body)["request_id"]
        requests.append(
            raw_record(
                practice,
                "portal",
                body,
                headers={"event_type": "refill.requested"},
                message_id=f"refill.requested/{rid}",
            )
        )
    return people, history, requests


async def _send(pipeline, producer, raws):
    for raw in raws:
        topic = f"{pipeline.prefix}.raw.{raw['feed']}"
        await producer.send_async(
            topic,
            f"{raw['practice_id']}/{raw['message_id']}",
            pipeline.serde.encode(f"{topic}-value", "RawMessage", raw),
            raw["practice_id"],
        )


def test_hl7_history_then_portal_requests_give_the_right_class_and_evidence(cfg, stack):
    practice = "rfl-a"
    people, history, requests = _raws(practice)
    norm_topic = catalog.BY_SUFFIX[catalog.NORMALIZED["RefillRequest"]].name(cfg.topic_prefix)

    async def run():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            await _send(pipeline, producer, history + requests)  # no waiting: the agent's barrier orders them
            done = lambda: sum(v for k, v in pipeline.counts.items() if k.startswith("refill.")) >= 3  # noqa: E731
            assert await runner.wait_for(done, 180), pipeline.counts
            # every consumed hop waits at most worker_fetch_wait_ms for a fetch, not Faust's hard-coded
            # 1500 ms that made a refill take 5-7 s through the broker (streams/fetching.py)
            assert fetching.fetch_wait_ms(pipeline.app) == cfg.worker_fetch_wait_ms == 50
            # the first request's normalized record delivered again: the same item, rewritten
            first = consume_all(stack.bootstrap, norm_topic, pipeline.serde, 3)
            key, value = next((k, v) for k, v in first if v["request_id"].endswith("_0"))
            await producer.send_async(
                norm_topic, key.decode(), pipeline.serde.encode(f"{norm_topic}-value", "RefillRequest", value), practice
            )
            again = lambda: sum(v for k, v in pipeline.counts.items() if k.startswith("refill.")) >= 4  # noqa: E731
            assert await runner.wait_for(again, 120), pipeline.counts
            return pipeline
        finally:
            producer.close()
            await runner.stop(pipeline)

    pipeline = asyncio.run(run())
    handoff = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", pipeline.serde, 200, timeout=20)
    items = [v for _k, v in handoff if v["workflow"] == "refill"]
    assert len(items) == 4 and len({i["item_id"] for i in items}) == 3  # one item per request
    by_patient = {i["patient_id"]: i for i in items}
    routine = by_patient[people[0].mrn]
    assert routine["kind"] == "refill.routine" and routine["queue"] == "clinician"
    assert routine["produced_by"]["rule_id"] == "refill.ace_arb" and routine["produced_by"]["rule_version"] == "1"
    ev = {e["label"]: e for e in routine["evidence"]}
    assert ev["potassium"]["value"] == "4.3" and ev["potassium"]["assessment"] == "met"
    assert ev["potassium"]["observed_at"].startswith("2026-11-27") and ev["potassium"]["record_type"] == "Observation"
    assert ev["creatinine or eGFR"]["value"] == "0.9"
    assert ev["systolic blood pressure"]["value"] == "128"
    assert ev["last completed visit"]["record_type"] == "Encounter" and ev["last completed visit"]["value"]
    assert ev["last completed visit"]["observed_at"].startswith("2026-09-28")
    assert ev["medication order"]["assessment"] == "met" and "refills left 0" in ev["medication order"]["excerpt"]
    assert {o["option"] for o in routine["options"]} == {"approve", "edit", "reject"}

    review = by_patient[people[4].mrn]
    assert review["kind"] == "refill.needs_review" and review["priority"] == "high"
    k = next(e for e in review["evidence"] if e["label"] == "potassium")
    assert k["value"] == "5.9" and k["assessment"] == "abnormal" and k["flags"] == ["H"]

    controlled = by_patient[people[8].mrn]
    assert controlled["kind"] == "refill.needs_review"
    assert controlled["produced_by"]["rule_id"] == "refill.controlled_substance"

    drafts = [v for _k, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.drafts", pipeline.serde, 5, timeout=15)]
    assert {d["draft_id"] for d in drafts} == set(routine["draft_ids"])
    mr = MedicationRequest.model_validate(json.loads(drafts[0]["body"]))
    assert mr.status == "draft" and mr.medicationCodeableConcept.coding[0].code == "314076"

    audit = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.audit.in", pipeline.serde, 500, timeout=15)
    triaged = [v for _k, v in audit if v["action"] == "refill_triaged"]
    assert len({a["event_id"] for a in triaged}) == 3
    assert all(people[i].mrn not in json.dumps(a) for a in triaged for i in CASES)  # ids and codes, no MRNs
