"""The 837P writer round-trips through the project's own 837 reader.

Every professional claim in the public corpus is read (``normalize_x12``), written back
out (``write_837p``) and read again: the record must come back the same (its ``source``
aside, which names the new interchange). A claim the writer cannot carry faithfully
must be refused with ``WriteError``, never written differently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from practiceflow.processors.base import Rejected
from practiceflow.processors.x12.normalize import normalize_x12
from practiceflow.processors.x12.write837 import Parties, WriteError, write_837p
from tests.fixtures import shared_data_dir
from tests.processors.corpus_outcomes import X12

PARTIES = Parties(
    sender_id="PFSENDER",
    receiver_id="CLEARHOUSE",
    submitter_name="DEMO CLINIC",
    receiver_name="CLEARINGHOUSE",
    billing_provider_name="DEMO CLINIC",
    billing_provider_npi="1234567893",
    billing_provider_tax_id="123456789",
    billing_address=("1 MAIN ST", "SPRINGFIELD", "IL", "62701"),
    subscriber_last="DOE",
    subscriber_first="JANE",
    subscriber_birth_date="1980-02-03",
    subscriber_gender="F",
)
DATA = shared_data_dir()


def _claims(raw: bytes) -> list[dict]:
    return [r.value for r in normalize_x12(raw, "rt", 0).records if r.record_type == "Claim"]


def _strip(c: dict) -> dict:
    return {k: v for k, v in c.items() if k != "source"}


def _files() -> list[Path]:
    if DATA is None:
        return []
    x12 = DATA / "x12"
    return sorted(p for p in [*x12.glob("837P*.x12"), *(x12 / "malformed").glob("837P*.x12")])


@pytest.mark.corpus
@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_every_corpus_837p_claim_round_trips(path: Path):
    try:
        claims = _claims(path.read_bytes())
    except Rejected as exc:
        # a file the reader rejects has nothing to round-trip: check it is the pinned rejection
        assert (
            X12[path.relative_to(path.parents[1] if path.parent.name == "malformed" else path.parent).as_posix()]
            == f"rejected:{exc.reason_code}"
        )
        return
    for i, claim in enumerate(claims):
        try:
            text = write_837p(claim, PARTIES, interchange_control=i + 1, created="2026-12-01")
        except WriteError:
            continue  # refused, not changed (see test_refuses_what_it_cannot_carry)
        back = _claims(text.encode())
        assert len(back) == 1
        # a claim without CLM05 (a malformed sample) is written as office visit, original claim
        expected = _strip(claim) | {
            "frequency_code": claim["frequency_code"] or "1",
            "place_of_service": claim["place_of_service"] or "11",
        }
        assert _strip(back[0]) == expected
        assert back[0]["source"]["message_type"] == "837P"


@pytest.mark.corpus
def test_most_corpus_claims_are_writable():
    written = refused = 0
    for path in _files():
        try:
            claims = _claims(path.read_bytes())
        except Rejected:
            continue
        for claim in claims:
            try:
                write_837p(claim, PARTIES, interchange_control=1, created="2026-12-01")
                written += 1
            except WriteError:
                refused += 1
    assert written >= 15 and refused <= written // 4, (written, refused)


def _claim(**over) -> dict:
    base = {
        "practice_id": "rt",
        "claim_id": "PCN-1",
        "patient_id": "MRN1",
        "payer_id": "PAYER1",
        "payer_name": "ACME HEALTH",
        "total_charge": 150.0,
        "service_date": "2026-11-02",
        "diagnoses": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E119", "display": None},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "display": None},
        ],
        "lines": [
            {
                "procedure": {"system": "http://www.ama-assn.org/go/cpt", "code": "99214", "display": None},
                "modifiers": ["25"],
                "charge": 120.0,
                "paid": None,
                "units": 1.0,
                "service_date": "2026-11-02",
                "adjustments": [],
                "remark_codes": [],
                "control_number": "L1",
                "allowed": None,
            },
            {
                "procedure": {"system": "http://www.ama-assn.org/go/cpt", "code": "82947", "display": None},
                "modifiers": [],
                "charge": 30.0,
                "paid": None,
                "units": 2.0,
                "service_date": "2026-11-02",
                "adjustments": [],
                "remark_codes": [],
                "control_number": None,
                "allowed": None,
            },
        ],
        "status": "replacement",
        "source": {"feed": "x12", "message_id": "m", "raw_topic": None, "message_type": "837P", "sent_at": None},
        "use": "claim",
        "member_id": "W123456789",
        "frequency_code": "7",
        "place_of_service": "11",
        "payer_claim_control_number": "PAYERCCN-77",
        "authorization_number": "AUTH-555",
    }
    base.update(over)
    return base


def test_a_replacement_claim_round_trips_with_f8_and_g1():
    claim = _claim()
    text = write_837p(claim, PARTIES, interchange_control=42, created="2026-12-01")
    assert "CLM*PCN-1*150***11:B:7*Y*A*Y*Y~" in text
    assert "REF*F8*PAYERCCN-77~" in text and "REF*G1*AUTH-555~" in text
    (back,) = _claims(text.encode())
    assert _strip(back) == _strip(claim)
    assert back["status"] == "replacement"
    # the same inputs give the same bytes (the draft id and the approval refer to them)
    assert write_837p(claim, PARTIES, interchange_control=42, created="2026-12-01") == text


def test_refuses_what_it_cannot_carry():
    with pytest.raises(WriteError, match="delimiter"):
        write_837p(_claim(claim_id="A*B"), PARTIES, interchange_control=1, created="2026-12-01")
    with pytest.raises(WriteError, match="control number"):
        write_837p(_claim(payer_claim_control_number=None), PARTIES, interchange_control=1, created="2026-12-01")
    dx = [{"system": "http://snomed.info/sct", "code": "44054006", "display": None}]
    with pytest.raises(WriteError, match="ICD"):
        write_837p(_claim(diagnoses=dx), PARTIES, interchange_control=1, created="2026-12-01")
