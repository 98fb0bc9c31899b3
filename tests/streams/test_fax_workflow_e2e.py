"""Faxes dropped into the inbox travel through the real broker to work items and ClickHouse rows.

A text PDF (a lab result with flagged values), a 4-page G4 TIFF packet (cover sheet, a
2-page referral, a PA denial) and an image-only PDF addressed to another practice go
through the folder drop, the raw topic, the worker's OCR and fax workflow, and the
ClickHouse sink: every document gets a FaxClassification (class, confidence, patient
match, routing) and the work items land in the right queues.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from practiceflow.processors.fax import synth
from practiceflow.settings import REPO_ROOT, FaxRoster
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.sinks.docstore import LocalDocumentStore
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.fax import FaxOcr
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker

PRACTICE = "clinic-fax"

LAB = [
    "Valley Reference Laboratory",
    "LABORATORY REPORT - FINAL",
    "Patient: Maria Lopez",
    "DOB: 04/05/1961",
    "MRN: 884512",
    "Ordering Physician: Dr. Ana Patel, Demo Family Clinic",
    "Collected: 03/02/2025   Reported: 03/03/2025",
    "Test  Result  Flag  Units  Reference Range",
    "Glucose  212  H  mg/dL  70-99",
    "Potassium  5.9  H  mmol/L  3.5-5.1",
    "Sodium  139  mmol/L  135-145",
    "Creatinine  1.10  mg/dL  0.7-1.3",
    "Abnormal results are flagged H (high) or L (low).",
    "END OF REPORT",
]
COVER = [
    "Summit Primary Care",
    "FAX COVER SHEET",
    "To: Dr. Ana Patel",
    "Company: Demo Family Clinic",
    "From: Dr. Paul Carter",
    "Fax: (555) 201-3344",
    "Date: 03/02/2025",
    "Pages (including cover): 4",
    "Re: Referral",
    "CONFIDENTIALITY NOTICE: This facsimile contains protected health information.",
]
REFERRAL_1 = [
    "Summit Primary Care",
    "Phone (555) 201-3300   Fax (555) 201-3344",
    "SPECIALIST REFERRAL",
    "Date: 03/02/2025",
    "To: Dr. Ana Patel, Demo Family Clinic",
    "RE: James Rivera  DOB 11/12/1958  MRN 771203",
    "Dear Dr. Patel,",
    "I am referring James Rivera for evaluation of exertional chest pain and palpitations.",
    "Symptoms began about 6 weeks ago; current medications include lisinopril 10 mg daily.",
    "Please consider an ECG and echocardiogram. Relevant notes are attached.",
    "Sincerely, Dr. Paul Carter",
]
REFERRAL_2 = [
    "RE: James Rivera  DOB 11/12/1958  (continued)",
    "Past medical history: hypertension, hyperlipidemia.",
    "Medications: lisinopril 10 mg; atorvastatin 40 mg.",
    "Allergies: penicillin.",
    "Reason for referral restated: please evaluate and advise.",
    "Page 2 of 2",
]
PA = [
    "Blue Harbor Health Plan",
    "PRIOR AUTHORIZATION DETERMINATION",
    "Member: James Rivera   DOB: 11/12/1958   Member ID: W123456789",
    "Patient ID: 771203",
    "Prescriber: Dr. Ana Patel, Demo Family Clinic",
    "Request: MRI lumbar spine without contrast",
    "Reference Number: PA-558201",
    "Decision: DENIED",
    "Medical necessity criteria were not met based on the information provided.",
    "You may request a peer-to-peer review or file an appeal within 60 days.",
]
MISDIRECTED = [
    "Cedar Ridge Cardiology",
    "Phone (555) 300-1000   Fax (555) 300-1999",
    "Consultation Note",
    "To: Dr. Helen Wallace, Lakeshore Pediatrics",
    "RE: Noah Brooks  DOB 02/03/2015",
    "Thank you for referring Noah Brooks in cardiology consultation for palpitations.",
    "Assessment: benign sinus arrhythmia. Plan: no follow-up needed.",
    "Consult report signed by Dr. Omar Stone",
]


async def _drive(cfg, stack, tmp_path, files: dict[str, bytes], expect_rows: int):
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    sink = ClickHouseSink(cfg.chdb_dsn)
    pipeline = Pipeline(
        cfg, stack.bootstrap, stack.registry_url, sink=sink, fax_handler=FaxOcr.from_settings(cfg, store)
    )
    pipeline.register_schemas()
    await runner.start(pipeline)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="drop")
    drops = FolderDrop(core, tmp_path / "drop", {PRACTICE}, store, settle_seconds=0)
    t0 = time.monotonic()
    try:
        for name, data in files.items():
            (drops.inbox(PRACTICE, "fax") / name).write_bytes(data)
        assert await drops.scan_once() == len(files)
        done = await runner.wait_for(
            lambda: (
                pipeline.counts.get("fax.normalized", 0) >= len(files)
                and pipeline.counts.get("clickhouse.fax_classifications", 0) >= expect_rows
                and pipeline.counts.get("clickhouse.handoff_items", 0) >= 1
            ),
            timeout=280,
        )
        assert done, pipeline.counts
        elapsed = time.monotonic() - t0
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline, sink, elapsed


def test_pdf_and_multipage_tiff_become_routed_work_items_and_clickhouse_rows(cfg, stack, tmp_path):
    cfg = cfg.model_copy(
        update={
            "fax_model_dir": REPO_ROOT / ".stack" / "models",  # trained once per checkout
            "fax_roster": {PRACTICE: FaxRoster(names=["Demo Family Clinic"], providers=["Dr. Ana Patel"])},
            "ocr_timeout_seconds": 200,
        }
    )
    lab_pdf = synth.to_text_pdf(synth.render_lines_document([LAB], seed=1, noise=0))
    packet = synth.to_tiff_g4(synth.render_lines_document([COVER, REFERRAL_1, REFERRAL_2, PA], seed=2, noise=0.5))
    wrong = synth.to_image_pdf(synth.render_lines_document([MISDIRECTED], seed=3, noise=0.5))
    files = {"lab.pdf": lab_pdf, "packet.tif": packet, "wrong.pdf": wrong}
    p, sink, elapsed = asyncio.run(_drive(cfg, stack, tmp_path, files, expect_rows=5))
    try:
        assert p.counts["fax.normalized"] == 3 and not p.counts.get("fax.dead_lettered")

        serde = p.serde
        cls = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.fax_classification", serde, 5)]
        by_class = {(c["doc_class"], tuple(c["pages"])): c for c in cls}
        assert set(by_class) == {
            ("lab_result", (1,)),
            ("cover_sheet", (1,)),
            ("referral", (2, 3)),
            ("prior_auth_response", (4,)),
            ("referral", (1,)),  # the misdirected consult reply
        }, [(c["doc_class"], c["pages"], c["confidence"]) for c in cls]
        lab = by_class[("lab_result", (1,))]
        assert lab["queue"] == "clinician" and lab["priority"] == "high" and lab["kind"] == "lab.abnormal"
        assert lab["patient_match"] == "unverified" and lab["patient_id"] == "884512"
        cover = by_class[("cover_sheet", (1,))]
        assert cover["queue"] == "none" and cover["pages_announced"] == 4 and not cover["missing_pages"]
        referral = by_class[("referral", (2, 3))]
        assert referral["queue"] == "referrals" and referral["patient_id"] == "771203"
        pa = by_class[("prior_auth_response", (4,))]
        assert pa["queue"] == "billing" and pa["kind"] == "pa.denied" and pa["priority"] == "high"
        assert any(e["field"] == "reference" and e["value"] == "PA-558201" for e in pa["extracted"])
        wrong_c = by_class[("referral", (1,))]
        assert wrong_c["misdirected"] and wrong_c["queue"] == "misdirected"
        for c in cls:  # every extracted value points at a page of its document and a span on it
            for e in c["extracted"]:
                assert e["page"] in c["pages"] and 0 <= e["start"] <= e["end"]

        items = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.handoff", serde, 4)]
        queues = sorted((i["queue"], i["kind"]) for i in items)
        assert queues == [
            ("billing", "fax.prior_auth_response"),
            ("clinician", "fax.lab_result"),
            ("misdirected", "fax.misdirected"),
            ("referrals", "referral.incoming"),
        ]
        mis = next(i for i in items if i["queue"] == "misdirected")
        assert "reply to sender" in mis["title"]
        assert all(i["source"]["feed"] == "fax" for i in items)

        rows = sink.query(
            "SELECT doc_class, queue, patient_match, abstained, confidence FROM {db}.fax_classifications FINAL "
            "ORDER BY doc_class, queue"
        )
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("cover_sheet", "none", "not_needed"),
            ("lab_result", "clinician", "unverified"),
            ("prior_auth_response", "billing", "unverified"),
            ("referral", "misdirected", "none"),
            ("referral", "referrals", "unverified"),
        ]
        assert all(0.0 < r[4] <= 1.0 for r in rows)
        handoff_rows = sink.query("SELECT queue FROM {db}.handoff_items FINAL ORDER BY queue")
        assert [r[0] for r in handoff_rows] == ["billing", "clinician", "misdirected", "referrals"]
    finally:
        sink.close()  # chdb: one engine path per process
    print(f"3 faxes (6 pages) from the inbox to work items and ClickHouse rows in {elapsed:.1f} s")
