"""Faxed pharmacy refill requests reach refill triage through the real broker (issue 10).

Four text PDFs go into the fax inbox of a worker whose fax step matches patients against a
small chart directory: a refill request the embedded classifier is sure of (atorvastatin),
one for a controlled substance (oxycodone), one for a patient with no chart, and one the
classifier leans towards but abstains on, which the local language-model server sorts as a
refill request. The sure ones and the model-sorted one become ``RefillRequest`` records
(drug with strength, pharmacy, the matched patient) and refill triage makes its own
clinician items under its own rules (a controlled substance: never routine, high
priority); the one with no chart stays with a person in fax triage.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from practiceflow.processors.fax import synth
from practiceflow.processors.workflows.fax.match import Directory, DirectoryEntry
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
from tests.llm_fixtures import llm_server, llm_settings, set_mode
from tests.streams.test_fax_llm_e2e import PRACTICE, _cfg
from tests.streams.test_pipeline import consume_all

__all__ = ["llm_server"]

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]

CHARTS = Directory(
    {
        PRACTICE: [
            DirectoryEntry("MRN-1", "Maria Lopez", "1961-04-05"),
            DirectoryEntry("MRN-2", "Peter Grant", "1955-02-03"),
            DirectoryEntry("MRN-3", "Lena Fox", "1970-08-09"),
        ]
    }
)
MARKER = "sent on behalf of the pharmacist"  # the page the classifier wrapper is unsure of


def _refill(patient: str, dob: str, drug: str, extra: str = "") -> list[str]:
    return [
        "CVS Pharmacy #4417",
        "Phone (555) 111-2222  Fax (555) 222-3333",
        "REFILL AUTHORIZATION REQUEST",
        "To: Dr. Ana Patel   Demo Family Clinic",
        *([extra] if extra else []),
        f"Patient: {patient}",
        f"DOB: {dob}",
        f"Drug: {drug}",
        "Sig: take 1 tablet by mouth daily",
        "Qty: 90",
        "Refills remaining: 0",
        "[ ] Approved  refills: ____  [ ] Denied",
    ]


class UnsureOnMarker:
    """The shipped model, except that it keeps its best guess but drops below its threshold on the marked page."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes = model.classes
        self.threshold = model.threshold
        self.training_counts = model.training_counts
        self.calibration = model.calibration

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def probabilities(self, texts):
        probs = np.asarray(self.model.probabilities(texts), dtype=float)
        for i, t in enumerate(texts):
            if MARKER in t:
                probs[i, :] = 0.3 * probs[i, :] + 0.7 / len(self.classes)
        return probs


def _files() -> dict[str, bytes]:
    pages = {
        "atorvastatin.pdf": _refill("Maria Lopez", "04/05/1961", "atorvastatin 40 mg tablet"),
        "oxycodone.pdf": _refill("Peter Grant", "02/03/1955", "oxycodone 5 mg tablet"),
        "nochart.pdf": _refill("Nadia Unknown", "01/01/1950", "metformin 500 mg tablet"),
        "unsure.pdf": _refill("Lena Fox", "08/09/1970", "lisinopril 20 mg tablet", MARKER),
    }
    return {
        name: synth.to_text_pdf(synth.render_lines_document([lines], seed=20 + i, noise=0))
        for i, (name, lines) in enumerate(pages.items())
    }


def _triaged(c: dict[str, int]) -> int:
    return sum(c.get(f"refill.{k}", 0) for k in ("routine", "needs_visit", "needs_review"))


async def _drive(cfg, stack, tmp_path, files: dict[str, bytes]) -> Pipeline:
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    fax = FaxOcr.from_settings(cfg, store)
    fax.classify.model = UnsureOnMarker(fax.classify.model)
    fax.classify.matcher = CHARTS  # the answers handler uses the fax step's matcher too
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, fax_handler=fax)
    pipeline.register_schemas()
    t0 = time.monotonic()
    await runner.start(pipeline)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    core = GatewayCore(producer, AvroSerde(registry_client(stack.registry_url)), cfg.topic_prefix, name="drop")
    drops = FolderDrop(core, tmp_path / "drop", {PRACTICE}, store, settle_seconds=0)
    try:
        for name, data in files.items():
            (drops.inbox(PRACTICE, "fax") / name).write_bytes(data)
        assert await drops.scan_once() == len(files)
        c = pipeline.counts
        done = await runner.wait_for(
            lambda: (
                c.get("fax.normalized", 0) >= len(files)
                and c.get("commands.llm", 0) >= 2
                and c.get("fax.llm.results", 0) >= c.get("commands.llm", 0)
                and _triaged(c) >= 3
            ),
            timeout=400,
        )
        if not done:
            print("counts", dict(sorted(c.items())))
        assert done
        print(f"faxes -> refill triage in {time.monotonic() - t0:.1f}s: {dict(sorted(c.items()))}")
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline


def test_faxed_refill_requests_reach_refill_triage_with_drug_strength_pharmacy_and_patient(
    stack, cfg, llm_server, tmp_path
):
    set_mode(llm_server, "normal")
    cfg = _cfg(cfg, llm_settings(llm_server))
    p = asyncio.run(_drive(cfg, stack, tmp_path, _files()))
    assert _triaged(p.counts) == 3, p.counts

    requests = {
        v["patient_id"]: v
        for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.refill_request", p.serde, 3)
    }
    assert set(requests) == {"MRN-1", "MRN-2", "MRN-3"}  # never the patient with no chart
    for patient, drug in (("MRN-1", "atorvastatin 40 mg"), ("MRN-2", "oxycodone 5 mg"), ("MRN-3", "lisinopril 20 mg")):
        req = requests[patient]
        assert req["medication"].startswith(drug) and req["pharmacy"] == "CVS Pharmacy #4417", req
        assert req["source"]["feed"] == "fax" and req["submitted_at"] > 1_700_000_000_000

    items = read_work_items(stack.bootstrap, p.serde, cfg.topic_prefix, PRACTICE)
    refills = {i["patient_id"]: i for i in items.values() if i["workflow"] == "refill"}
    assert set(refills) == {"MRN-1", "MRN-2", "MRN-3"}
    assert all(i["queue"] == "clinician" and i["what_happened"].startswith("Faxed refill") for i in refills.values())
    # refill triage's own rules: a controlled substance is never routine, always a clinician, high priority
    oxy = refills["MRN-2"]
    assert oxy["kind"] == "refill.needs_review" and oxy["priority"] == "high"
    assert oxy["produced_by"]["rule_id"] == "refill.controlled_substance"

    # the model-sorted page: its fax triage item is closed and points at refill triage's item
    (old,) = [i for i in items.values() if i["workflow"] == "fax" and i["state"] == "superseded"]
    assert old["queue"] == "triage" and old["outcome"] == f"superseded by {refills['MRN-3']['item_id']}"
    # no chart: a person in fax triage, no RefillRequest
    open_fax = [i for i in items.values() if i["workflow"] == "fax" and i["state"] == "open"]
    assert len(open_fax) == 1 and open_fax[0]["queue"] == "triage", open_fax
    cls = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.fax_classification", p.serde, 5)]
    assert {c["routing_reason"] for c in cls if c["queue"] == "triage"} >= {"patient_no_match"}
    assert sum(1 for c in cls if c["queue"] == "refill_triage") == 3  # two by the classifier, one after the model
