"""An approved authorization as the denial workflow's fact (processors/workflows/prior_auth/on_file.py)."""

from __future__ import annotations

from practiceflow.processors.workflows.denials.store import PatientFacts, authorization_fix, fold_patient
from practiceflow.processors.workflows.prior_auth.on_file import VALID_DAYS, authorization_on_file
from tests.denials_fixtures import claim_record

DRAFTED = 1_796_083_200_000  # 2026-12-01 00:00 UTC: the order's authorization was drafted that day
ANSWERED = DRAFTED + 2 * 86_400_000  # approved on 2026-12-03


def _state(status: str = "approved", number: str | None = "AUTH-77", code: str = "72148") -> dict:
    return {
        "practice_id": "p1",
        "authorization_id": "pa0abc",
        "patient_id": "MRN1",
        "code": code,
        "status": status,
        "authorization_number": number,
        "approved_number": number if status in ("approved", "partially_approved", "modified") else None,
        "payer_id": "60054",
        "item": {"created_at": DRAFTED},
        "updated_at": ANSWERED,
    }


def test_only_an_authorized_state_with_a_number_is_on_file():
    assert authorization_on_file(_state("drafted")) is None
    assert authorization_on_file(_state("pended")) is None
    assert authorization_on_file(_state("denied")) is None
    assert authorization_on_file(_state("approved", number=None)) is None
    assert authorization_on_file(_state(code="")) is None  # no procedure: it would match every claim
    # a number on file that no approving answer carried (a denied 278's reference): not on file
    assert authorization_on_file({**_state(), "approved_number": None}) is None
    for status in ("approved", "partially_approved", "modified"):
        fact = authorization_on_file(_state(status))
        assert fact is not None and fact["number"] == "AUTH-77" and fact["procedures"] == ["72148"]
    fact = authorization_on_file(_state())
    assert (fact["service_start"], fact["service_end"]) == ("2026-12-01", "2027-06-01")  # 180 days after the answer
    assert VALID_DAYS == 180 and fact["record_key"] == "p1/pa0abc"


def test_the_fact_fixes_a_claim_for_that_procedure_inside_the_window_only():
    facts = fold_patient(None, "Authorization", authorization_on_file(_state()))
    on_file = PatientFacts((), tuple(facts["authorizations"]))
    inside = claim_record(lines=(("72148", (), 900.0),), dos="2026-12-10")
    fix = authorization_fix(inside, on_file)
    assert fix is not None and fix.changes[0].new == "AUTH-77" and fix.changes[0].record_key == "p1/pa0abc"
    assert authorization_fix(claim_record(lines=(("72148", (), 900.0),), dos="2026-11-20"), on_file) is None  # before
    assert authorization_fix(claim_record(lines=(("72148", (), 900.0),), dos="2027-07-01"), on_file) is None  # after
    assert authorization_fix(claim_record(lines=(("99214", (), 150.0),), dos="2026-12-10"), on_file) is None  # other


def test_another_payers_number_is_never_the_fix():
    """Review s21 S2: payer A approved the MRI; the claim went to payer B (a second coverage)."""
    facts = fold_patient(None, "Authorization", authorization_on_file(_state()))
    on_file = PatientFacts((), tuple(facts["authorizations"]))
    line = (("72148", (), 900.0),)
    assert authorization_fix(claim_record(lines=line, dos="2026-12-10", payer_id="60054"), on_file) is not None
    assert authorization_fix(claim_record(lines=line, dos="2026-12-10", payer_id="99999"), on_file) is None
    unknown = fold_patient(None, "Authorization", {**authorization_on_file(_state()), "payer_id": None})
    assert (
        authorization_fix(
            claim_record(lines=line, dos="2026-12-10"), PatientFacts((), tuple(unknown["authorizations"]))
        )
        is None
    )
