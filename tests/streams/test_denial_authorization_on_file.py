"""Issue 11: "attach the authorization number ... later to the claim", through the real broker.

An MRI order needs authorization; the payer's 278 approves it with number AUTH2026001. The
practice bills the MRI (837P) without the number, and the payer's 835 denies the line CO-197
(authorization absent). The denial agent reads the approved authorization from the
prior-auth table (``PriorAuth.authorizations_of`` -> ``prior_auth/on_file.authorization_on_file``)
and drafts a corrected claim that quotes the number (837P REF*G1), with the authorization as
the fix's evidence. Old code: the denial agent folded only coverages, so the same 835 got an
appeal draft and no corrected claim.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from practiceflow.jobs.run_file import raw_record
from practiceflow.processors.workflows.prior_auth.step import authorization_id
from practiceflow.sampleday import prior_auth as spa
from practiceflow.sampleday.people import make_people
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.topics import create_topics
from practiceflow.streams.workitem_reader import read_practice_records, read_work_items
from tests.denials_fixtures import RemitClaim, claim_837, claim_record, read_claim, remit_835
from tests.streams.test_prior_auth_flow import _send

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]


def test_a_claim_denied_for_a_missing_authorization_is_corrected_with_the_approved_number(cfg, stack):
    practice = "pa-claim"
    people = spa.patients(make_people(40, 7))
    p0 = people[0]
    history = [
        raw_record(practice, "hl7v2", m) for m in spa.history(p0, 0, date(2026, 11, 27), iter(range(710001, 799999)))
    ]
    aid = authorization_id(practice, p0.mrn, spa.order_id(0))

    async def run():
        create_topics(stack.bootstrap, cfg.topic_prefix, cfg.topic_partitions, 1)
        pipeline = Pipeline(cfg, stack.bootstrap, stack.registry_url)
        pipeline.register_schemas()
        await runner.start(pipeline)
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions)
        try:
            await _send(pipeline, producer, history)
            assert await runner.wait_for(lambda: pipeline.counts.get("prior_auth.drafted", 0) >= 1, 240), (
                pipeline.counts
            )
            response = spa.response_278(practice, p0, 991, "20261127").encode()
            await _send(pipeline, producer, [raw_record(practice, "x12", response)])
            applied = lambda: pipeline.counts.get("prior_auth.responses_applied", 0) >= 1  # noqa: E731
            assert await runner.wait_for(applied, 180), pipeline.counts
            state = pipeline.prior_auth.authorization(practice, aid)
            assert state["status"] == "approved" and state["approved_number"] == "AUTH2026001"
            # the MRI is billed after the order was drafted (the authorization's window starts then)
            dos = datetime.fromtimestamp(state["item"]["created_at"] / 1000, tz=UTC).date()
            claim = claim_record(
                "PCNMRI1",
                mrn=p0.mrn,
                member_id=p0.member_id,
                payer_id=state["payer_id"],  # the payer that approved it (another payer's number is no fix)
                lines=((state["code"], (), 900.0),),
                dos=dos.isoformat(),
            )
            await _send(pipeline, producer, [raw_record(practice, "x12", claim_837(claim, control=31))])
            stored = lambda: pipeline.counts.get("denials.claims_stored", 0) >= 1  # noqa: E731
            assert await runner.wait_for(stored, 120), pipeline.counts
            remit = RemitClaim(
                "PCNMRI1",
                900.0,
                0.0,
                member_id=p0.member_id,
                lines=((state["code"], 900.0, 0.0, (("CO", "197", 900.0),), ("N54",)),),
                dos=dos.strftime("%Y%m%d"),
            )
            await _send(pipeline, producer, [raw_record(practice, "x12", remit_835([remit], control=32))])
            denied = lambda: pipeline.counts.get("denials.adjudications", 0) >= 1  # noqa: E731
            assert await runner.wait_for(denied, 120), pipeline.counts
            return pipeline
        finally:
            producer.close()
            await runner.stop(pipeline)

    pipeline = asyncio.run(run())
    denials = {k: v for k, v in pipeline.counts.items() if k.startswith("denials.")}
    assert denials.get("denials.action.corrected_claim") == 1, sorted(denials.items())
    items = read_work_items(stack.bootstrap, pipeline.serde, cfg.topic_prefix, practice)
    (item,) = [i for i in items.values() if i["workflow"] == "denials"]
    assert item["kind"] == "denials.corrected_claim"
    fix = [e for e in item["evidence"] if e.get("record_type") == "Authorization"]
    assert fix and fix[0]["record_key"] == f"{practice}/{aid}" and fix[0]["value"] == "AUTH2026001", item["evidence"]
    topic = catalog.BY_SUFFIX["drafts"].name(cfg.topic_prefix)
    drafts = [
        d
        for d in read_practice_records(stack.bootstrap, pipeline.serde, topic, practice, "Draft")
        if d.get("item_id") == item["item_id"]
    ]
    (x837,) = [d for d in drafts if d["kind"] == "x12.837P"]
    corrected = read_claim(x837["body"].encode())
    assert corrected["authorization_number"] == "AUTH2026001"  # REF*G1 on the corrected claim
    assert corrected["frequency_code"] == "7"
