"""A 271 saying a service needs authorization (EB11 Y) opens a prior-authorization item (issue 11).

The 271 is the local clearinghouse simulator's PRIORAUTH answer read by the real X12
normalizer; the rule is the shipped ``rules/prior_auth/eligibility.yaml``; the patient
context is built with the real fold."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from practiceflow.localstack.clearinghouse import answer_271
from practiceflow.processors.workflows.intake.eligibility import read_271
from practiceflow.processors.workflows.prior_auth.eligibility import KIND, item_id, on_eligibility, required
from practiceflow.processors.workflows.prior_auth.rules import load_prior_auth_rules
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft
from practiceflow.processors.x12.build270 import Inquiry270, Person270
from tests.processors.test_prior_auth import NOW, PT, RULES, P, ctx_with, mri_case

CIGNA = ("62308", "CIGNA TEST")


def _271_text(member: str = "PRIORAUTH01", service_type: str = "62") -> str:
    """The clearinghouse simulator's answer for ``member`` (PRIORAUTH*: EB11 Y on the service type asked)."""
    q = Inquiry270(
        trace_number="T1",
        payer_id=CIGNA[0],
        payer_name=CIGNA[1],
        provider_npi="1234567893",
        provider_name="TEST CLINIC",
        subscriber=Person270("DOE", "ANN", "1970-02-03", "F", member),
        service_date="2026-03-05",
        service_types=(service_type,),
    )
    return answer_271([q], datetime(2026, 3, 1, 12, 0, tzinfo=UTC)).decode()


def _271(member: str = "PRIORAUTH01", service_type: str = "62") -> dict[str, Any]:
    response = read_271(_271_text(member, service_type), P, "T1")
    assert response is not None
    return dict(response)


def _run(response, ctx=None, auths=(), existing=(), rules=RULES):
    return on_eligibility(
        response, patient_id=PT, ctx=ctx, authorizations=list(auths), existing_items=set(existing), rules=rules, now=NOW
    )


def test_eb11_y_opens_one_billing_item_naming_the_rule_with_the_271_as_evidence():
    response = _271()
    assert [st for st, _r, _b in required(response, RULES)] == ["62"]
    result = _run(response, ctx_with())
    (item,) = result.work_items
    assert item["kind"] == KIND and item["queue"] == "billing" and item["patient_id"] == PT
    assert "MRI/CAT scan (62)" in item["title"] and "CIGNA TEST" in item["title"]
    assert (item["produced_by"]["rule_id"], item["produced_by"]["rule_version"]) == (
        "prior_auth.eligibility.eb11_required",
        "1",
    )
    (ev,) = item["evidence"]
    assert ev["record_type"] == "EligibilityResponse" and ev["value"] == "EB11 Y"
    assert ev["ref"] == "prior_auth.eligibility.eb11_required@1"
    assert item["item_id"] == item_id(P, PT, response, "62")
    assert [a.action for a in result.audit] == ["prior_auth_payer_requires"]


def test_a_clean_271_opens_nothing():
    assert _run(_271("W123")).empty


def test_an_open_order_for_the_service_type_goes_to_the_ordering_clinician():
    c2 = ctx_with(
        (
            "Order",
            {
                "order_id": "ord-mri",
                "code": {"code": "72148", "display": "MRI lumbar"},
                "ordered_at": "2026-03-01",
                "ordering_provider": "Smith, Jo (1234567893)",
            },
        ),
    )
    (item,) = _run(_271(), c2).work_items
    assert item["queue"] == "clinician" and item["subject_id"] == "ord-mri" and item["subject_type"] == "Order"
    assert [e["record_type"] for e in item["evidence"]] == ["EligibilityResponse", "Order"]
    assert "Smith, Jo" in item["evidence"][1]["excerpt"]
    # a 271 for another service type does not pull the MRI order in
    (other,) = _run(_271(service_type="98"), c2).work_items
    assert other["queue"] == "billing" and len(other["evidence"]) == 1


def test_no_duplicates_an_open_authorization_for_the_payer_or_an_item_already_issued():
    response = _271()
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert d.state is not None
    same_payer = {**d.state, "payer_id": CIGNA[0], "payer_name": "Cigna Test"}
    covered = _run(response, c, [same_payer])
    assert not covered.work_items and [a.action for a in covered.audit] == ["prior_auth_payer_requires_covered"]
    # another payer's authorization, or one the payer already answered, does not cover it
    assert _run(response, c, [{**same_payer, "payer_id": "X", "payer_name": "Other"}]).work_items
    assert _run(response, c, [{**same_payer, "status": "approved"}]).work_items
    # a replayed 271 / the next check of the same plan: the item exists, nothing new
    first = _run(response, c).work_items[0]
    assert _run(response, c, existing=[first["item_id"]]).empty
    assert _run(response, c).work_items[0] == first  # deterministic ids and content


def test_the_rule_is_data_a_practice_can_silence_it(tmp_path: Path):
    (tmp_path / "prior_auth").mkdir()
    (tmp_path / "prior_auth" / "eligibility.yaml").write_text(
        "rules:\n"
        "  - id: prior_auth.eligibility.cigna_mri_off\n"
        '    version: "1"\n'
        "    kind: eligibility_rule\n"
        '    payers: ["62308"]\n'
        '    service_types: ["62"]\n'
        "    needs_auth: false\n"
        '    source: "practice: Cigna answers EB11 Y on every imaging benefit"\n'
    )
    rules = load_prior_auth_rules(tmp_path)
    assert _run(_271(), rules=rules).empty
    assert _run(_271(service_type="98"), rules=rules).work_items  # other service types still open items


def test_a_271_received_before_the_cutoff_is_backlog_audit_only():
    """Review s20 S6: the agent's first start reads the retained 271s of norm.eligibility; one
    received before its cut-off (``since``) gets an audit entry and no item; at or after it, an item."""
    response = _271()
    kw: dict[str, Any] = {"patient_id": PT, "ctx": ctx_with(), "authorizations": [], "existing_items": set()}
    old = on_eligibility(response, **kw, rules=RULES, now=NOW - 1, since=NOW)
    assert not old.work_items
    assert [(a.action, a.details["service_types"]) for a in old.audit] == [("prior_auth_payer_requires_backlog", "62")]
    (item,) = on_eligibility(response, **kw, rules=RULES, now=NOW, since=NOW).work_items
    assert item["kind"] == KIND
    assert on_eligibility(_271("W123"), **kw, rules=RULES, now=NOW - 1, since=NOW).empty  # no EB11 Y: nothing
