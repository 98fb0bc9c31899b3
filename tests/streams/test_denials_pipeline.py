"""Denial follow-up end to end through the real broker and registry (issue 11).

The practice's 837 goes through the X12 gateway's raw topic, the worker normalizes it to
``norm.claim`` and the denial agent stores it; a re-coded 837 of the same claim follows
(the coder added modifier 25 in the practice's system). Then the payer's 835 denies the
line CO-4 (modifier missing). The worker must put a work item on ``handoff`` (billing
queue), a corrected-claim draft on ``drafts`` whose 837P, read back by the project's own
reader, differs from the original claim on ``norm.claim`` by exactly the fix (plus the
replacement markers: frequency 7 and the payer's claim control number), and the money on
``denials.ledger``. The latency from the 835 on the raw topic to its work item on
``handoff`` is printed (recorded in bench/RESULTS.md; not asserted).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from practiceflow.jobs.run_file import raw_record
from practiceflow.processors.workflows.denials.store import claim_diff
from practiceflow.streams import runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from tests.denials_fixtures import PID, RemitClaim, claim_837, claim_record, read_claim, remit_835
from tests.streams.test_pipeline import consume_all

pytestmark = pytest.mark.broker

CO4 = RemitClaim(
    "PCN1001",
    190.0,
    32.0,
    status="1",
    pccn="PAYERCCN-77",
    lines=(("99214", 150.0, 0.0, (("CO", "4", 150.0),), ("N519",)), ("82947", 40.0, 32.0, (("CO", "45", 8.0),), ())),
)


async def _flow(cfg, stack) -> tuple[Pipeline, float]:
    create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
    p = Pipeline(cfg, stack.bootstrap, stack.registry_url)
    p.register_schemas()
    await runner.start(p)
    producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
    topic = f"{cfg.topic_prefix}.raw.x12"

    async def send(raw: dict) -> None:
        value = p.serde.encode(f"{topic}-value", "RawMessage", raw)
        await producer.send_async(topic, f"{raw['practice_id']}/{raw['message_id']}", value, raw["practice_id"])

    try:
        await send(raw_record(PID, "x12", claim_837(claim_record(), control=1)))
        recoded = claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0)))
        await send(raw_record(PID, "x12", claim_837(recoded, control=2, created="2026-11-05")))
        assert await runner.wait_for(lambda: p.counts.get("denials.claims_stored", 0) >= 2, 60), p.counts
        t0 = time.monotonic()
        await send(raw_record(PID, "x12", remit_835([CO4], control=3)))
        assert await runner.wait_for(lambda: p.counts.get("denials.adjudications", 0) >= 1, 60), p.counts
        latency = time.monotonic() - t0
    finally:
        producer.close()
        await runner.stop(p)
    return p, latency


def test_an_835_denial_gives_a_corrected_claim_whose_diff_is_exactly_the_fix(cfg, stack):
    p, latency = asyncio.run(_flow(cfg, stack))
    print(f"\n835 on raw.x12 -> denial work item confirmed on handoff: {latency * 1000:.0f} ms")
    assert p.counts["denials.action.corrected_claim"] == 1
    prefix = cfg.topic_prefix
    items = [v for _, v in consume_all(stack.bootstrap, f"{prefix}.handoff", p.serde, 1) if v["workflow"] == "denials"]
    (item,) = items
    assert (item["queue"], item["kind"], item["state"]) == ("billing", "denials.corrected_claim", "open")
    assert item["produced_by"]["rule_id"] == "denials.action.coding_modifier"
    drafts = {v["kind"]: v for _, v in consume_all(stack.bootstrap, f"{prefix}.drafts", p.serde, 3)}
    assert set(drafts) == {"x12.837P", "fhir.Claim", "billing.write_off"}
    claim = json.loads(drafts["fhir.Claim"]["body"])  # the same replacement for the EHR (issue 12)
    assert claim["status"] == "draft" and claim["related"][0]["claim"]["identifier"]["value"] == "PAYERCCN-77"
    assert item["draft_ids"][0] == drafts["x12.837P"]["draft_id"] and drafts["x12.837P"]["status"] == "draft"
    claims = [v for _, v in consume_all(stack.bootstrap, f"{prefix}.norm.claim", p.serde, 2)]
    original = next(c for c in claims if not c["lines"][0]["modifiers"])
    corrected = read_claim(drafts["x12.837P"]["body"].encode())
    assert [[m["coding"][0]["code"] for m in i.get("modifier", [])] for i in claim["item"]] == [
        ln["modifiers"] for ln in corrected["lines"]
    ]
    assert ["25"] in [ln["modifiers"] for ln in corrected["lines"]]
    fix = [(c.path, c.old, c.new) for c in claim_diff(original, corrected, replacement=False)]
    assert fix == [("lines[1].modifiers", [], ["25"])]
    markers = {c.path: (c.old, c.new) for c in claim_diff(original, corrected)} | {}
    assert {k: v for k, v in markers.items() if k != "lines[1].modifiers"} == {
        "status": ("submitted", "replacement"),
        "frequency_code": ("1", "7"),
        "payer_claim_control_number": (None, "PAYERCCN-77"),
    }
    ledger = {v["category"]: v for _, v in consume_all(stack.bootstrap, f"{prefix}.denials.ledger", p.serde, 2)}
    assert ledger["coding_modifier"]["recoverable"] == 150.0 and ledger["coding_modifier"]["state"] == "open"
    assert ledger["contractual_obligation"]["written_off"] == 8.0
