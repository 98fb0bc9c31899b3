"""Patient-portal webhooks: signatures, strict validation, normalization, fuzzing."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from fastavro.validation import validate
from hypothesis import given, settings, strategies as st

from practiceflow.processors.base import NormalizeResult, Rejected
from practiceflow.processors.portal import EVENT_TYPES, event_id, normalize_portal, sign, verify_signature
from practiceflow.schemas.avro_gen import load_parsed

PRACTICE = "prac-1"
SECRET = b"whsec_test_0123456789"
RECEIVED = datetime(2024, 5, 1, 14, 10, tzinfo=UTC)
RECEIVED_MS = int(RECEIVED.timestamp() * 1000)
NOW = RECEIVED.timestamp()

INTAKE = {
    "submission_id": "intk_01HZX3",
    "submitted_at": "2024-05-01T14:03:00Z",
    "patient_id": None,
    "patient": {
        "family_name": "Rivera",
        "given_name": "Ana",
        "birth_date": "1988-02-29",
        "phone": "+1 555 010 7788",
        "email": "ana@example.org",
    },
    "insurance": {"payer": "Acme Health", "member_id": "XJ123456789", "group_number": "G-77"},
    "reason_for_visit": "knee pain after a fall",
    "answers": {"allergies": "penicillin", "smoker": "no"},
}
REFILL = {
    "request_id": "rfl_8842",
    "submitted_at": "2024-05-01T14:05:10-04:00",
    "patient_id": "MRN004512",
    "medication": {"name": "lisinopril 10 mg tablet", "code": "314076"},
    "pharmacy": {"name": "Main St Pharmacy", "ncpdp_id": "1234567", "phone": "555-010-2000"},
    "last_filled": "2024-03-30",
    "note": "almost out",
}
SCHEDULING = {
    "request_id": "sch_5531",
    "submitted_at": "2024-05-01T14:07:00Z",
    "patient_id": "MRN004512",
    "requested_provider": "Dr. Okafor",
    "preferred_times": [
        {"start": "2024-05-06T09:00:00-04:00", "end": "2024-05-06T12:00:00-04:00"},
        {"start": "2024-05-07T15:30:00-04:00"},
    ],
    "visit_type": "follow-up",
    "reason": "blood pressure check",
}
BODIES = {"intake.submitted": INTAKE, "refill.requested": REFILL, "scheduling.requested": SCHEDULING}
RECORD_TYPES = {
    "intake.submitted": "IntakeForm",
    "refill.requested": "RefillRequest",
    "scheduling.requested": "SchedulingRequest",
}


def norm(event_type: str, body) -> NormalizeResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    result = normalize_portal(event_type, raw, PRACTICE, RECEIVED_MS)
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
    return result


def rejected(event_type: str, body) -> Rejected:
    with pytest.raises(Rejected) as info:
        norm(event_type, body)
    return info.value


def with_(base: dict, path: str, value) -> dict:
    obj = copy.deepcopy(base)
    node = obj
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return obj


_DELETE = object()


# --------------------------------------------------------------------------- signatures
BODY = json.dumps(INTAKE).encode()
TS = str(int(NOW))


def test_good_signature_passes():
    verify_signature(SECRET, BODY, TS, sign(SECRET, BODY, TS), NOW)
    bare = hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    verify_signature(SECRET, BODY, TS, bare, NOW + 299)
    verify_signature(SECRET, BODY, TS, bare.upper(), NOW - 299)
    # secret rotation: several signatures, one valid
    verify_signature(SECRET, BODY, TS, f"sha256={'0' * 64}, {sign(SECRET, BODY, TS)}", NOW)


@pytest.mark.parametrize(
    "body,ts,sig,code",
    [
        (BODY + b" ", TS, sign(SECRET, BODY, TS), "bad_signature"),  # body altered
        (BODY, str(int(NOW) + 1), sign(SECRET, BODY, TS), "bad_signature"),  # timestamp altered
        (BODY, TS, sign(b"other-secret", BODY, TS), "bad_signature"),  # wrong key
        (BODY, TS, "sha256=nothex", "bad_signature"),
        (BODY, TS, "sha256=" + "a" * 63, "bad_signature"),
        (BODY, "12.5", sign(SECRET, BODY, "12.5"), "bad_signature"),
        (BODY, "-5", sign(SECRET, BODY, "-5"), "bad_signature"),
        (BODY, TS, "", "missing_signature"),
        (BODY, TS, None, "missing_signature"),
        (BODY, "", sign(SECRET, BODY, TS), "missing_signature"),
        (BODY, None, sign(SECRET, BODY, TS), "missing_signature"),
        (BODY, "   ", sign(SECRET, BODY, TS), "missing_signature"),
    ],
)
def test_bad_signatures(body, ts, sig, code):
    with pytest.raises(Rejected) as info:
        verify_signature(SECRET, body, ts, sig, NOW)
    assert info.value.reason_code == code


@pytest.mark.parametrize("offset", [301, -301, 86400, -86400 * 365])
def test_stale_or_future_timestamp(offset):
    ts = str(int(NOW) - offset)
    with pytest.raises(Rejected) as info:
        verify_signature(SECRET, BODY, ts, sign(SECRET, BODY, ts), NOW)
    assert info.value.reason_code == "stale_timestamp"


def test_custom_tolerance_and_empty_secret():
    ts = str(int(NOW) - 100)
    with pytest.raises(Rejected) as info:
        verify_signature(SECRET, BODY, ts, sign(SECRET, BODY, ts), NOW, tolerance_s=60)
    assert info.value.reason_code == "stale_timestamp"
    with pytest.raises(Rejected) as info:  # an empty key must never authenticate anything
        verify_signature(b"", BODY, TS, sign(b"", BODY, TS), NOW)
    assert info.value.reason_code == "bad_signature"


def test_signature_checked_before_timestamp():
    ts = str(int(NOW) - 10_000)
    with pytest.raises(Rejected) as info:
        verify_signature(SECRET, BODY, ts, sign(b"wrong", BODY, ts), NOW)
    assert info.value.reason_code == "bad_signature"


# --------------------------------------------------------------------------- normalization
def test_intake():
    result = norm("intake.submitted", INTAKE)
    assert result.message_id == "intake.submitted/intk_01HZX3" == event_id("intake.submitted", BODY)
    [rec] = result.records
    assert rec.record_type == "IntakeForm" and rec.key == f"{PRACTICE}/-/intk_01HZX3"
    v = rec.value
    assert (v["family_name"], v["given_name"], v["birth_date"]) == ("Rivera", "Ana", "1988-02-29")
    assert (v["insurance_payer"], v["insurance_member_id"], v["insurance_group"]) == (
        "Acme Health",
        "XJ123456789",
        "G-77",
    )
    assert v["answers"] == {"allergies": "penicillin", "smoker": "no"}
    assert v["submitted_at"] == int(datetime(2024, 5, 1, 14, 3, tzinfo=UTC).timestamp() * 1000)
    assert v["source"] == {
        "feed": "portal",
        "message_id": "intake.submitted/intk_01HZX3",
        "raw_topic": None,
        "message_type": "intake.submitted",
        "sent_at": "2024-05-01T14:03:00+00:00",
    }


def test_intake_minimal():
    body = {
        "submission_id": "s1",
        "submitted_at": "2024-05-01T14:03:00+02:00",
        "patient": {"family_name": " O'Brien ", "given_name": "Séan", "birth_date": "2001-07-04"},
    }
    [rec] = norm("intake.submitted", body).records
    assert rec.value["family_name"] == "O'Brien" and rec.value["insurance_payer"] is None
    assert rec.value["answers"] == {}


def test_refill():
    result = norm("refill.requested", REFILL)
    [rec] = result.records
    v = rec.value
    assert rec.record_type == "RefillRequest" and rec.key == f"{PRACTICE}/MRN004512/rfl_8842"
    assert v["medication"] == "lisinopril 10 mg tablet" and v["medication_code"] == "314076"
    assert v["pharmacy"] == "Main St Pharmacy (NCPDP 1234567, 555-010-2000)"
    assert v["last_filled"] == "2024-03-30" and v["note"] == "almost out"
    assert v["submitted_at"] == int(datetime(2024, 5, 1, 18, 5, 10, tzinfo=UTC).timestamp() * 1000)


def test_scheduling():
    [rec] = norm("scheduling.requested", SCHEDULING).records
    v = rec.value
    assert v["preferred_times"] == ["2024-05-06T09:00:00-04:00/2024-05-06T12:00:00-04:00", "2024-05-07T15:30:00-04:00"]
    assert (v["requested_provider"], v["visit_type"], v["reason"]) == (
        "Dr. Okafor",
        "follow-up",
        "blood pressure check",
    )


def test_resend_same_message_id():
    a = norm("refill.requested", REFILL)
    b = norm("refill.requested", json.dumps(REFILL, indent=2).encode())
    assert a.message_id == b.message_id and a.records == b.records


@pytest.mark.parametrize(
    "event_type,path,value,fragment",
    [
        ("intake.submitted", "submission_id", _DELETE, "submission_id"),
        ("intake.submitted", "submission_id", "", "submission_id"),
        ("intake.submitted", "submission_id", "has space", "submission_id"),
        ("intake.submitted", "submission_id", "x" * 129, "submission_id"),
        ("intake.submitted", "submitted_at", "2024-05-01T14:03:00", "timezone"),  # naive
        ("intake.submitted", "submitted_at", 1714572180, "submitted_at"),
        ("intake.submitted", "submitted_at", "1999-12-31T00:00:00Z", "submitted_at"),
        ("intake.submitted", "submitted_at", "2024-05-03T14:03:00Z", "after"),  # > 1 day after receipt
        ("intake.submitted", "patient.birth_date", "1988-02-30", "birth_date"),
        ("intake.submitted", "patient.birth_date", "2024-05-02", "future"),
        ("intake.submitted", "patient.birth_date", "1899-12-31", "1900"),
        ("intake.submitted", "patient.birth_date", "05/01/1988", "birth_date"),
        ("intake.submitted", "patient.family_name", "", "family_name"),
        ("intake.submitted", "patient.family_name", "   ", "family_name"),
        ("intake.submitted", "patient.family_name", "x" * 101, "family_name"),
        ("intake.submitted", "patient.given_name", _DELETE, "given_name"),
        ("intake.submitted", "patient.phone", "call me", "phone"),
        ("intake.submitted", "patient.phone", "(((-)))", "phone"),
        ("intake.submitted", "patient.email", "not-an-email", "email"),
        ("intake.submitted", "patient", _DELETE, "patient"),
        ("intake.submitted", "answers", {"bad key!": "x"}, "answers"),
        ("intake.submitted", "answers", {f"q{i}": "x" for i in range(101)}, "answers"),
        ("intake.submitted", "answers", {"q": 5}, "answers"),
        ("intake.submitted", "insurance.member_id", _DELETE, "member_id"),
        ("intake.submitted", "extra_field", 1, "extra_field"),
        ("intake.submitted", "patient.ssn", "123-45-6789", "ssn"),
        ("refill.requested", "patient_id", _DELETE, "patient_id"),
        ("refill.requested", "patient_id", 4512, "patient_id"),  # strict: no int -> str
        ("refill.requested", "medication.name", "", "name"),
        ("refill.requested", "pharmacy.ncpdp_id", "12345", "ncpdp_id"),
        ("refill.requested", "last_filled", "2030-01-01", "future"),
        ("refill.requested", "note", "x" * 2001, "note"),
        (
            "scheduling.requested",
            "preferred_times",
            [{"start": "2024-05-06T12:00:00Z", "end": "2024-05-06T09:00:00Z"}],
            "end",
        ),
        ("scheduling.requested", "preferred_times", [{"start": "2024-05-06T09:00:00Z"}] * 11, "preferred_times"),
        ("scheduling.requested", "preferred_times", ["2024-05-06T09:00:00Z"], "preferred_times"),
        ("scheduling.requested", "preferred_times", [{"start": "2024-05-06T09:00:00"}], "timezone"),
    ],
)
def test_validation_errors_rejected(event_type, path, value, fragment):
    err = rejected(event_type, with_(BODIES[event_type], path, value))
    assert err.reason_code == "invalid_payload", err
    assert fragment in err.reason, err.reason


@pytest.mark.parametrize(
    "raw,code",
    [
        (b"", "empty_payload"),
        (b"{not json", "invalid_json"),
        (b"[]", "invalid_payload"),
        (b"null", "invalid_payload"),
        (b"\xff\xfe\x00", "invalid_encoding"),
        (b"{" + b'"a":' * 0 + b" " * (256 * 1024) + b"}", "payload_too_large"),
    ],
)
def test_body_level_rejections(raw, code):
    assert rejected("intake.submitted", raw).reason_code == code


def test_unknown_event_type():
    for et in ("intake", "INTAKE.SUBMITTED", "", None, "refill.cancelled"):
        with pytest.raises(Rejected) as info:
            normalize_portal(et, BODY, PRACTICE, RECEIVED_MS)  # type: ignore[arg-type]
        assert info.value.reason_code == "unknown_event_type"
        with pytest.raises(Rejected):
            event_id(et, BODY)  # type: ignore[arg-type]


def test_event_id_for_gateway_dedupe():
    for et, body in BODIES.items():
        raw = json.dumps(body).encode()
        assert event_id(et, raw) == norm(et, raw).message_id
    with pytest.raises(Rejected):
        event_id("refill.requested", json.dumps({"request_id": "bad id"}).encode())
    with pytest.raises(Rejected):
        event_id("refill.requested", b"{")


# --------------------------------------------------------------------------- fuzz
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15,
)


def _ok_or_rejected(event_type: str, raw: bytes) -> None:
    try:
        result = normalize_portal(event_type, raw, PRACTICE, RECEIVED_MS)
    except Rejected:
        return
    assert isinstance(result, NormalizeResult)
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)


@settings(max_examples=300, deadline=None)
@given(event_type=st.sampled_from(EVENT_TYPES + ("bogus",)), raw=st.binary(max_size=300))
def test_fuzz_random_bytes(event_type, raw):
    _ok_or_rejected(event_type, raw)


@settings(max_examples=300, deadline=None)
@given(event_type=st.sampled_from(EVENT_TYPES), value=_json)
def test_fuzz_random_json(event_type, value):
    _ok_or_rejected(event_type, json.dumps(value).encode())


@settings(max_examples=400, deadline=None)
@given(
    event_type=st.sampled_from(EVENT_TYPES),
    key=st.integers(min_value=0, max_value=50),
    value=_json,
    received=st.integers(min_value=-(2**62), max_value=2**62),
)
def test_fuzz_mutated_valid_bodies(event_type, key, value, received):
    body = copy.deepcopy(BODIES[event_type])
    flat = [(body, k) for k in body] + [(body[k], kk) for k in body if isinstance(body[k], dict) for kk in body[k]]
    parent, k = flat[key % len(flat)]
    parent[k] = value
    try:
        result = normalize_portal(event_type, json.dumps(body).encode(), PRACTICE, received)
    except Rejected:
        return
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
