"""The main job on a small day: every feed through its real gateway, summary consistent."""

from __future__ import annotations

import asyncio

import pytest

from practiceflow.jobs.day import run_day
from practiceflow.sampleday.generate import build_day

pytestmark = pytest.mark.broker


def test_small_practice_day_end_to_end(cfg, stack):
    plan = build_day(seed=3, n_patients=8, practice_id="clinic-day")
    report = asyncio.run(run_day(cfg, stack.bootstrap, stack.registry_url, plan, timeout=240))
    assert report.drained
    g, w = report.gateway, report.worker
    for feed in ("hl7v2", "fhir", "portal", "x12", "fax"):
        assert g.get(f"{feed}.accepted", 0) > 0, feed
        handled = sum(w.get(f"{feed}.{s}", 0) for s in ("normalized", "dead_lettered", "duplicate"))
        assert handled == g[f"{feed}.accepted"], (feed, g, w)
    assert w["hl7v2.duplicate"] == 1  # the resend after a lost ACK
    assert w["hl7v2.control_id_reused"] == 1  # a new result under a reused control id: processed, flagged
    assert report.acks == {"AA": len(plan.mllp) - 1, "AR": 1}
    assert g["portal.rejected"] == 1 and g["x12.rejected"] == 1
    assert g["fhir.rejected"] == 2  # the invalid resource, and the caller without credentials
    assert report.http["fhir 401"] == 1 and report.auth["refused"] == 2  # + the forged portal webhook
    assert report.auth["authenticated"] >= len(plan.fhir) + len(plan.x12_upload) + len(plan.fax_upload)
    assert g["fax.rejected"] == 1  # the text file in the fax folder
    assert w["fax.normalized"] == 6  # OCRed faxes became Document records
    # the fax workflow split the 4-page packet and recognised the fax meant for another practice
    classes = {(c, q) for c, q, _ in report.fax_classes}
    assert {("cover_sheet", "none"), ("prior_auth_response", "billing"), ("referral", "misdirected")} <= classes, (
        classes
    )
    # the fax workflow asked the day's model server (the local serve-local) and every answer came back
    assert w.get("commands.llm", 0) >= 1 and w.get("fax.llm.results", 0) == w["commands.llm"], w
    assert w.get("fax.llm.source.model", 0) >= 1 and report.llm_server.startswith("local serve-local http://127.0.0.1:")
    assert g["fax.claim_checked"] == 1  # the 5-page fax (> 1 MiB) went through the document store
    assert report.clickhouse["handoff_items"] >= 1
    # every portal refill request was triaged into exactly one class (sampleday/refills.py)
    refills = sum(1 for event, _body, good in plan.portal if event == "refill.requested" and good)
    assert refills > 0 and sum(v for k, v in w.items() if k.startswith("refill.")) == refills
    # the day's intake forms (2 for 8 patients): one clean check, one inactive plan, through the simulator
    assert w["intake.forms"] == len(plan.people) // 4 and w["intake.commands"] == w["intake.results"] == 2
    assert w["intake.outcome.eligible"] == 1 and w["intake.outcome.not_eligible"] == 1
    assert w["intake.reason.gap"] == 1 and w["intake.reason.clean"] == 1
    reasons = {(f, s, r) for f, s, r, _ in report.dead_letter_reasons}
    assert ("hl7v2", "gateway", "missing_control_id") in reasons
    assert ("fhir", "gateway", "unauthenticated") in reasons
