"""The sample day's refill cases give the class each was written for, through the real HL7
normalizer and the context fold (what the day's worker does, without the broker)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from practiceflow.processors.context.snapshot import apply, empty
from practiceflow.processors.dispatch import normalize_raw
from practiceflow.processors.workflows.refill.rules import load_refill_rules
from practiceflow.processors.workflows.refill.triage import triage
from practiceflow.sampleday import refills
from practiceflow.sampleday.generate import build_day
from practiceflow.sampleday.people import make_people


def test_sample_day_refill_cases_cover_every_class():
    people = make_people(40, 7)
    d = date(2026, 11, 27)
    controls = iter(range(500001, 599999))
    rules = load_refill_rules()
    requests = refills.requests(people, d, "2026-11-27T07:30:00Z")
    got = []
    for i, p in enumerate(people[refills.FIRST : refills.FIRST + len(refills.CASES)]):
        ctx = empty("demo-clinic", p.mrn)
        for n, msg in enumerate(refills.history(p, i, d, controls)):
            raw = {
                "practice_id": "demo-clinic",
                "feed": "hl7v2",
                "message_id": f"m{i}-{n}",
                "received_at": 0,
                "content_type": "application/hl7-v2",
                "payload": msg,
                "headers": {},
            }
            for r in normalize_raw(raw).records:
                ctx = apply(ctx, r.record_type, r.value)
        body = json.loads(requests[i][1])
        req = {
            "practice_id": "demo-clinic",
            "request_id": body["request_id"],
            "patient_id": body["patient_id"],
            "medication": body["medication"]["name"],
            "medication_code": None,
            "last_filled": body["last_filled"],
            "submitted_at": int(datetime(2026, 11, 27, 7, 30, tzinfo=UTC).timestamp() * 1000),
            "source": {"feed": "portal", "message_id": f"refill.requested/{body['request_id']}"},
        }
        got.append(triage(req, ctx, rules, req["submitted_at"]).triage_class)
    assert got == refills.EXPECTED
    assert set(got) == {"routine", "needs_review", "needs_visit"}


def test_the_day_sends_the_refill_requests_and_their_history():
    plan = build_day()
    events = [json.loads(b) for e, b, _ in plan.portal if e == "refill.requested"]
    assert len(events) == len(refills.CASES)
    assert sum(1 for m in plan.mllp if b"|ADT^A03^ADT_A03|R" in m) == sum(1 for c in refills.CASES if c[4])
