"""Faxes are matched to charts through the worker's patient context (issue 10), real broker.

An ADT^A04 registers two patients; then three faxes arrive that name a patient by name and
date of birth only (no MRN): a lab result for the first, a refill request for the second, a
refill request for a person with no chart. The fax step passes the context's barrier and
matches through the demographic index with the fax rule: the lab result and the refill
request carry the chart's id (``patient_match == "matched"``), the refill request reaches
refill triage (a RefillRequest and the refill workflow's clinician item), and the unknown
person's fax stays with a person in fax triage. On the old code (the MRN-on-the-page
matcher) all three went to triage unmatched.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from practiceflow.jobs.run_file import raw_record
from practiceflow.processors.fax import synth
from practiceflow.sampleday.hl7 import adt_a04
from practiceflow.sampleday.people import Person, make_people
from practiceflow.settings import REPO_ROOT, FaxRoster
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.fax import FaxOcr
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from practiceflow.streams.workitem_reader import read_work_items
from tests.streams.test_fax_refill_e2e import _refill
from tests.streams.test_patient_context import _send
from tests.streams.test_pipeline import consume_all

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]

PRACTICE = "clinic-faxctx"


def _people() -> tuple[Person, Person]:
    a, b = make_people(2, seed=11)
    a = Person(**{**a.__dict__, "mrn": "MRNA1", "given": "Maria", "family": "Lopez", "dob": "19610405", "sex": "F"})
    b = Person(**{**b.__dict__, "mrn": "MRNB2", "given": "Peter", "family": "Grant", "dob": "19550203", "sex": "M"})
    return a, b


def _lab(patient: str, dob: str) -> list[str]:
    return [
        "Valley Reference Laboratory",
        "LABORATORY REPORT - FINAL",
        f"Patient: {patient}",
        f"DOB: {dob}",
        "Ordering Physician: Dr. Ana Patel, Demo Family Clinic",
        "Collected: 03/02/2025   Reported: 03/03/2025",
        "Test  Result  Flag  Units  Reference Range",
        "Glucose  212  H  mg/dL  70-99",
        "Potassium  5.9  H  mmol/L  3.5-5.1",
        "Sodium  139  mmol/L  135-145",
        "Abnormal results are flagged H (high) or L (low).",
        "END OF REPORT",
    ]


def _files() -> dict[str, bytes]:
    pages = {
        "lab.pdf": _lab("LOPEZ, MARIA", "04/05/1961"),
        "refill.pdf": _refill("Peter Grant", "02/03/1955", "atorvastatin 40 mg tablet"),
        "nochart.pdf": _refill("Nadia Unknown", "01/01/1950", "metformin 500 mg tablet"),
    }
    return {
        name: synth.to_text_pdf(synth.render_lines_document([lines], seed=40 + i, noise=0))
        for i, (name, lines) in enumerate(pages.items())
    }


async def _drive(cfg, stack, tmp_path) -> Pipeline:
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, fax_handler=FaxOcr.from_settings(cfg, store))
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="drop")
    drops = FolderDrop(core, tmp_path / "drop", {PRACTICE}, store, settle_seconds=0)
    rng = random.Random(5)
    try:
        adts = [
            raw_record(PRACTICE, "hl7v2", adt_a04(p, f"R{i}", "20261101090000", rng).encode())
            for i, p in enumerate(_people())
        ]
        await _send(pipeline, producer, adts)
        # the faxes follow at once: the fax step's barrier makes the charts visible to it
        for name, data in _files().items():
            (drops.inbox(PRACTICE, "fax") / name).write_bytes(data)
        assert await drops.scan_once() == 3
        c = pipeline.counts
        done = await runner.wait_for(
            lambda: (
                c.get("fax.normalized", 0) >= 3
                and c.get("refill.needs_review", 0) + c.get("refill.routine", 0) + c.get("refill.needs_visit", 0) >= 1
            ),
            timeout=400,
        )
        assert done, dict(sorted(c.items()))
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline


def test_faxes_naming_a_registered_patient_by_name_and_dob_are_matched_through_the_context(cfg, stack, tmp_path):
    cfg = cfg.model_copy(
        update={
            "fax_model_dir": REPO_ROOT / ".stack" / "models",
            "fax_roster": {PRACTICE: FaxRoster(names=["Demo Family Clinic"], providers=["Dr. Ana Patel"])},
        }
    )
    p = asyncio.run(_drive(cfg, stack, tmp_path))
    prefix = cfg.topic_prefix
    cls = [v for _, v in consume_all(stack.bootstrap, f"{prefix}.norm.fax_classification", p.serde, 3)]
    by_class = {}
    for v in cls:
        by_class.setdefault(v["doc_class"], []).append(v)
    (lab,) = by_class["lab_result"]
    assert (lab["patient_match"], lab["patient_id"], lab["queue"]) == ("matched", "MRNA1", "clinician"), lab
    refills = {v["patient_id"]: v for v in by_class["refill_request"]}
    assert refills["MRNB2"]["patient_match"] == "matched" and refills["MRNB2"]["queue"] == "refill_triage"
    (unknown,) = [v for v in by_class["refill_request"] if v["patient_id"] != "MRNB2"]
    assert unknown["patient_id"] is None and unknown["patient_match"] == "none"
    assert (unknown["queue"], unknown["routing_reason"]) == ("triage", "patient_no_match")

    (req,) = [v for _, v in consume_all(stack.bootstrap, f"{prefix}.norm.refill_request", p.serde, 1)]
    assert req["patient_id"] == "MRNB2" and req["medication"].startswith("atorvastatin 40 mg")
    items = read_work_items(stack.bootstrap, p.serde, prefix, PRACTICE)
    (refill_item,) = [i for i in items.values() if i["workflow"] == "refill"]
    assert refill_item["patient_id"] == "MRNB2" and refill_item["queue"] == "clinician"
    open_fax = [i for i in items.values() if i["workflow"] == "fax" and i["state"] == "open"]
    assert {i["queue"] for i in open_fax if i.get("patient_id") is None} == {"triage"}
