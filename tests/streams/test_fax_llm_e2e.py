"""The fax workflow uses the LLM layer end to end, through the real broker.

Two text PDFs are dropped into the fax inbox: a referral page the embedded classifier
abstains on (the test's classifier wrapper makes that certain) and a referral whose
"Reason for Referral" the embedded rules do not read. The worker routes both at once
(triage; referrals), emits a ``cmd.llm`` command for each, runs the executor in the worker
(``llm.base_url`` set), and the local OpenAI-compatible server answers: the first item is
re-routed to ``referrals`` with the model's quote as evidence (page + span), the second
gains the reason (page + span). With the server down, the fallback answers, both items go
to a person (triage, ``llm_unavailable``), and the faxes (Documents, classifications) are kept.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from practiceflow.processors.fax import synth
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
from tests.fixtures import closed_port
from tests.llm_fixtures import llm_server, llm_settings, server_state, set_mode
from tests.streams.test_pipeline import consume_all

__all__ = ["llm_server"]

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]  # a worker start + OCR-free faxes, on a shared box

PRACTICE = "clinic-faxllm"
UNSURE = [  # the page the classifier wrapper abstains on
    "Harbor Family Medicine",
    "Re: our mutual patient",
    "Patient Name: Rosa Delgado",
    "DOB: 06/07/1970",
    "MRN: 550172",
    "We are sending this referral for a dermatology opinion on a changing mole.",
]
REFERRAL = [
    "Summit Primary Care",
    "SPECIALIST REFERRAL",
    "To: Dr. Ana Patel, Demo Family Clinic",
    "RE: James Rivera  DOB 11/12/1958  MRN 771203",
    "Reason for Referral: exertional chest pain",
    "I am referring James Rivera for evaluation of exertional chest pain and palpitations.",
    "Please consider an ECG and echocardiogram. Relevant notes are attached.",
    "Sincerely, Dr. Paul Carter",
]


class AbstainsOnMarker:
    """The shipped model, except that it is unsure (flat probabilities) of pages naming 'mutual patient'."""

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
            if "mutual patient" in t:
                probs[i, :] = 1.0 / len(self.classes)
        return probs


async def _drive(cfg, stack, tmp_path, files: dict[str, bytes]) -> Pipeline:
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    fax = FaxOcr.from_settings(cfg, store)
    fax.classify.model = AbstainsOnMarker(fax.classify.model)
    assert fax.classify.ask_llm
    pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url, fax_handler=fax)
    pipeline.register_schemas()
    t0 = time.monotonic()
    await runner.start(pipeline)
    print(f"worker started in {time.monotonic() - t0:.1f}s")
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
            ),
            timeout=400,
        )
        if not done:
            print("counts", dict(sorted(c.items())), "executor", pipeline.llm_executor.totals)
        assert done
        print(f"faxes -> answered items in {time.monotonic() - t0:.1f}s: {dict(sorted(c.items()))}")
    finally:
        producer.close()
        await runner.stop(pipeline)
    return pipeline


def _files() -> dict[str, bytes]:
    return {
        "unsure.pdf": synth.to_text_pdf(synth.render_lines_document([UNSURE], seed=11, noise=0)),
        "referral.pdf": synth.to_text_pdf(synth.render_lines_document([REFERRAL], seed=12, noise=0)),
    }


def _cfg(cfg, llm):
    return cfg.model_copy(
        update={
            "fax_model_dir": REPO_ROOT / ".stack" / "models",
            "fax_roster": {PRACTICE: FaxRoster(names=["Demo Family Clinic"], providers=["Dr. Ana Patel"])},
            "llm": llm,
        }
    )


def _by_page_text(items: dict, needle: str) -> dict:
    hits = [
        i
        for i in items.values()
        if i["state"] == "open" and any(needle in (e.get("excerpt") or "") for e in i["evidence"])
    ]
    assert len(hits) == 1, [(i["queue"], [e["excerpt"] for e in i["evidence"]]) for i in items.values()]
    return hits[0]


def test_abstained_page_and_missing_field_are_answered_by_the_local_model(stack, cfg, llm_server, tmp_path):
    set_mode(llm_server, "normal")
    cfg = _cfg(cfg, llm_settings(llm_server))
    p = asyncio.run(_drive(cfg, stack, tmp_path, _files()))
    assert p.counts["commands.llm"] == 2 and p.counts.get("fax.llm.source.model") == 2, p.counts
    assert server_state(llm_server)["counts"]["chat_answered"] == 2

    items = read_work_items(stack.bootstrap, p.serde, cfg.topic_prefix, PRACTICE)
    unsure = _by_page_text(items, "550172")
    assert unsure["revision"] == 2 and unsure["queue"] == "referrals", unsure
    # the triage item it was first routed as is closed, pointing at the item that replaced it
    (old,) = [i for i in items.values() if i["item_id"] == unsure["supersedes"]]
    assert old["queue"] == "triage" and old["state"] == "superseded"
    quote = next(e for e in unsure["evidence"] if e["label"] == "class_evidence")
    assert quote["page"] == 1 and quote["assessment"] == "read by llm" and quote["span_end"] > quote["span_start"]
    assert quote["excerpt"].lower() == "referral"
    assert any("language model" in a for a in unsure["actions_taken"])

    referral = _by_page_text(items, "771203")
    assert referral["revision"] == 2 and referral["queue"] == "referrals"
    reason = next(e for e in referral["evidence"] if e["label"] == "referral_reason")
    assert (
        reason["excerpt"] == "exertional chest pain" and reason["page"] == 1 and reason["assessment"] == "read by llm"
    )

    # the revised classifications (what ClickHouse shows) say the same
    cls = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.fax_classification", p.serde, 4)]
    assert sorted((c["doc_class"], c["queue"]) for c in cls if "llm" in c["extractor"]) == [
        ("referral", "referrals"),
        ("referral", "referrals"),
    ]
    # every answer is audited with model, prompt version, input hash; no text
    audits = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.audit.in", p.serde, 200, timeout=10)]
    calls = [a for a in audits if a["action"] == "llm_call"]
    assert len(calls) == 2 and all(a["details"]["input_sha256"] for a in calls)
    assert not any("Rosa" in str(a) or "Rivera" in str(a) for a in calls)


def test_model_server_down_falls_back_sends_items_to_a_person_and_keeps_the_faxes(stack, cfg, tmp_path):
    port = closed_port()
    from practiceflow.processors.llm.config import LLMSettings

    llm = LLMSettings(
        base_url=f"http://127.0.0.1:{port}/v1",
        allowed_endpoints=[f"http://127.0.0.1:{port}"],
        connect_timeout_s=0.5,
        timeout_s=1.0,
        deadline_s=3.0,
        max_attempts=2,
        backoff_s=0.05,
        backoff_max_s=0.1,
        model="any",
    )
    cfg = _cfg(cfg, llm)
    p = asyncio.run(_drive(cfg, stack, tmp_path, _files()))
    assert p.counts["fax.normalized"] == 2 and not p.counts.get("fax.dead_lettered")
    assert p.counts.get("fax.llm.source.model", 0) == 0, p.counts

    items = read_work_items(stack.bootstrap, p.serde, cfg.topic_prefix, PRACTICE)
    for needle in ("550172", "771203"):
        item = _by_page_text(items, needle)
        assert item["queue"] == "triage" and item["revision"] == 2, item
        assert "unavailable" in item["title"]
    docs = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.document", p.serde, 2)
    assert len(docs) == 2  # the faxes themselves are kept


def test_a_value_the_model_quotes_that_is_not_on_the_page_is_dropped_and_goes_to_a_person(
    stack, cfg, llm_server, tmp_path
):
    """The span check through the broker: the local server "corrects" what it quotes (digits
    changed, "(verified)" added), so nothing it says is in the page text."""
    set_mode(llm_server, "wrong_spans")
    cfg = _cfg(cfg, llm_settings(llm_server))
    p = asyncio.run(_drive(cfg, stack, tmp_path, _files()))
    assert p.counts.get("fax.llm.source.model") == 2 and p.counts.get("fax.llm.dropped_fields", 0) >= 1, p.counts
    assert server_state(llm_server)["counts"]["chat_answered"] == 2

    items = read_work_items(stack.bootstrap, p.serde, cfg.topic_prefix, PRACTICE)
    referral = _by_page_text(items, "771203")  # was routed to referrals; the answer sends it to a person
    assert referral["queue"] == "triage" and referral["revision"] == 2, referral
    assert not any(e["label"] == "referral_reason" for e in referral["evidence"])  # the value is dropped
    assert "needs a person" in referral["what_happened"]
    assert _by_page_text(items, "550172")["queue"] == "triage"  # its quoted evidence is not on the page either
    cls = [v for _, v in consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.fax_classification", p.serde, 4)]
    revised = [c for c in cls if "llm" in c["extractor"]]
    assert revised and all(c["queue"] == "triage" for c in revised)
    assert "llm_span_check_failed" in {c["routing_reason"] for c in revised}
    assert not any(e["field"] == "referral_reason" for c in cls for e in c["extracted"])
    docs = consume_all(stack.bootstrap, f"{cfg.topic_prefix}.norm.document", p.serde, 2)
    assert len(docs) == 2  # the faxes are kept
