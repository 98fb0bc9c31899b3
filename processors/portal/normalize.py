"""Patient-portal webhooks: signature check, strict payload validation, normalization.

Webhook contract (portal -> practiceflow gateway)
=================================================

``POST /webhooks/portal/<practice_id>`` with a JSON body (UTF-8, at most 256 KiB) and
these headers:

=====================  =====================================================================
``Content-Type``       ``application/json`` (``; charset=utf-8`` optional)
``X-Portal-Event``     ``intake.submitted`` | ``refill.requested`` | ``scheduling.requested``
``X-Portal-Timestamp`` Unix time in whole seconds when the portal signed the request
``X-Portal-Signature`` ``sha256=<hex>``: lowercase hex HMAC-SHA256, keyed with the practice's
                       webhook secret, over ``f"{timestamp}.".encode() + body`` (the raw
                       body bytes, exactly as sent). During a secret rotation the portal
                       may send several comma-separated signatures; one must match.
                       A bare ``<hex>`` (no ``sha256=``) is accepted too.
``X-Portal-Delivery``  optional delivery-attempt id, informational only
=====================  =====================================================================

The gateway calls :func:`verify_signature` (reject -> HTTP 401, nothing published),
then dedupes on the event's stable id (``submission_id`` / ``request_id``;
:func:`event_id` extracts it, and it is ``NormalizeResult.message_id`` after
normalization) with its seen-id cache, then publishes the raw bytes. A replay inside
the 5-minute timestamp window is stopped by that cache; outside it, by the timestamp
check. The portal retries non-2xx responses with the *same* id and body, so a retry
is recognised as a duplicate.

Bodies (all timestamps ISO 8601 with an offset; dates ``YYYY-MM-DD``; unknown fields
are rejected):

``intake.submitted``::

    {"submission_id": "intk_01HZX3", "submitted_at": "2024-05-01T14:03:00Z",
     "patient_id": null,
     "patient": {"family_name": "Rivera", "given_name": "Ana", "birth_date": "1988-02-29",
                 "phone": "+1 555 010 7788", "email": "ana@example.org"},
     "insurance": {"payer": "Acme Health", "member_id": "XJ123456789", "group_number": "G-77"},
     "reason_for_visit": "knee pain after a fall",
     "answers": {"allergies": "penicillin", "smoker": "no"}}

    Optional (the eligibility check uses them): ``patient.sex`` (F/M/U),
    ``patient.address`` ({line: [..], city, state, postal_code}), ``insurance.payer_id``,
    ``insurance.subscriber`` ({relationship: self|spouse|child|other, family_name,
    given_name, birth_date}) and ``appointment`` ({appointment_id, start, provider,
    service_type: X12 EQ01 code}).

``refill.requested``::

    {"request_id": "rfl_8842", "submitted_at": "2024-05-01T14:05:10-04:00",
     "patient_id": "MRN004512",
     "medication": {"name": "lisinopril 10 mg tablet", "code": "314076"},
     "pharmacy": {"name": "Main St Pharmacy", "ncpdp_id": "1234567", "phone": "555-010-2000"},
     "last_filled": "2024-03-30", "note": "almost out"}

``scheduling.requested``::

    {"request_id": "sch_5531", "submitted_at": "2024-05-01T14:07:00Z", "patient_id": "MRN004512",
     "requested_provider": "Dr. Okafor",
     "preferred_times": [{"start": "2024-05-06T09:00:00-04:00", "end": "2024-05-06T12:00:00-04:00"},
                         {"start": "2024-05-07T15:30:00-04:00"}],
     "visit_type": "follow-up", "reason": "blood pressure check"}

Limits: ids 1-128 of ``[A-Za-z0-9._:-]``; names 100 chars; free text 2000; at most 100
intake answers (keys ``[A-Za-z0-9_.-]`` up to 100, values up to 2000) and 10 preferred
windows (each at most 31 days, end after start). ``birth_date``/``last_filled`` must be
on or after 1900-01-01 and not after the day the event was received;
``submitted_at`` not before 2000 and not more than a day after receipt.

Reason codes: ``bad_signature``, ``stale_timestamp``, ``missing_signature`` (from
:func:`verify_signature`); ``unknown_event_type``, ``payload_too_large``,
``empty_payload``, ``invalid_encoding``, ``invalid_json``, ``invalid_payload``
(schema violations, summarized).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from practiceflow.processors.base import Normalized, NormalizeResult, Rejected, entity_key, typed_record
from practiceflow.processors.identity.choose import (
    DEFAULT_POLICY,
    IdentityPolicy,
    looks_like_ssn,
    scrub_ssn,
    unresolved_id,
)

from .models import (
    ID_FIELDS,
    IntakeAddress,
    IntakeSubmission,
    RefillRequestPayload,
    SchedulingRequestPayload,
    model_for,
)

if TYPE_CHECKING:  # the record shapes, generated from schemas/models.py (plain dicts at run time)
    from practiceflow.schemas.typed import (
        AddressDict,
        IntakeFormDict,
        RefillRequestDict,
        SchedulingRequestDict,
        SourceRefDict,
    )

__all__ = ["normalize_portal", "verify_signature", "event_id", "EVENT_TYPES", "MAX_BODY_BYTES"]

FEED = "portal"
MAX_BODY_BYTES = 256 * 1024
EVENT_TYPES = tuple(ID_FIELDS)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TS = re.compile(r"^[0-9]{1,12}$")


# --------------------------------------------------------------------------- signatures
def verify_signature(
    secret: bytes,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    now_s: float,
    tolerance_s: int = 300,
) -> None:
    """Check the portal's HMAC-SHA256 signature and the timestamp window; raise Rejected if bad.

    The signed message is ``f"{timestamp}.".encode() + body``. The HMAC is checked first
    (the timestamp is only trustworthy once it is authenticated), then the window, in
    both directions (a timestamp from the future is as suspect as an old one).
    """
    if (
        not timestamp_header
        or not str(timestamp_header).strip()
        or not signature_header
        or not str(signature_header).strip()
    ):
        raise Rejected("missing_signature", "X-Portal-Timestamp and X-Portal-Signature are both required")
    if not secret:
        raise Rejected("bad_signature", "no webhook secret configured for this practice")
    ts = str(timestamp_header).strip()
    if not _TS.match(ts):
        raise Rejected("bad_signature", "X-Portal-Timestamp is not whole Unix seconds")
    candidates = []
    for part in str(signature_header).split(","):
        part = part.strip()
        if part.lower().startswith("sha256="):
            part = part[7:]
        if _HEX64.match(part):
            candidates.append(part.lower())
    if not candidates:
        raise Rejected("bad_signature", "X-Portal-Signature holds no sha256=<64 hex> value")
    expected = hmac.new(bytes(secret), ts.encode() + b"." + bytes(body), hashlib.sha256).hexdigest()
    matched = False
    for cand in candidates:  # compare every candidate: no early exit
        matched |= hmac.compare_digest(expected, cand)
    if not matched:
        raise Rejected("bad_signature", "signature does not match the body")
    if not isinstance(now_s, (int, float)) or not math.isfinite(now_s):
        raise Rejected("stale_timestamp", "no usable current time")
    skew = now_s - int(ts)
    if abs(skew) > tolerance_s:
        raise Rejected("stale_timestamp", f"timestamp is {int(skew)} s from now (tolerance {tolerance_s} s)")


def sign(secret: bytes, body: bytes, timestamp: int | str) -> str:
    """The ``X-Portal-Signature`` value the portal sends (for tests and the portal's SDK)."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- parsing
def _decode(raw: bytes) -> str:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise Rejected("invalid_payload", f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > MAX_BODY_BYTES:
        raise Rejected("payload_too_large", f"{len(raw)} bytes > {MAX_BODY_BYTES}")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise Rejected("empty_payload", "empty body")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected("invalid_encoding", f"body is not UTF-8: {e}") from None


def _summarize(e: ValidationError, limit: int = 5) -> str:
    parts = []
    errors = e.errors(include_url=False)
    for err in errors[:limit]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "<body>"
        parts.append(f"{loc}: {str(err.get('msg', ''))[:150]}")
    more = len(errors) - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _message_id(event_type: str, eid: str) -> str:
    return f"{event_type}/{eid}"


def event_id(event_type: str, raw: bytes) -> str:
    """The stable dedupe id of an event (``<event_type>/<submission or request id>``).

    Cheap (no full validation) so the gateway can dedupe before publishing; the same
    string is ``NormalizeResult.message_id``. Raises Rejected when it cannot be read.
    """
    if model_for(event_type) is None:
        raise Rejected("unknown_event_type", f"{str(event_type)[:60]!r} is not one of {', '.join(EVENT_TYPES)}")
    text = _decode(raw)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise Rejected("invalid_json", str(e)[:200]) from None
    field = ID_FIELDS[event_type]
    eid = obj.get(field) if isinstance(obj, dict) else None
    if not isinstance(eid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}", eid):
        raise Rejected("invalid_payload", f"{field} missing or malformed")
    return _message_id(event_type, eid)


# --------------------------------------------------------------------------- normalization
def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def normalize_portal(
    event_type: str, raw: bytes, practice_id: str, received_at_ms: int, *, policy: IdentityPolicy | None = None
) -> NormalizeResult:
    """Validate one portal webhook body and map it to an IntakeForm / RefillRequest / SchedulingRequest.

    ``patient_id`` is the practice's patient reference (its MRN); one written like an
    SSN never keys a record (``unresolved:<message>``, with a warning), and SSNs typed
    into intake answers or free text are masked to the last four unless the practice's
    identity ``policy`` opts in (``processors/identity``).

    Pure: ``received_at_ms`` is the only notion of "now" (date checks use it). The
    signature is *not* checked here; the gateway does that with :func:`verify_signature`
    before the bytes are ever published.
    """
    model = model_for(event_type)
    if model is None:
        raise Rejected("unknown_event_type", f"{str(event_type)[:60]!r} is not one of {', '.join(EVENT_TYPES)}")
    text = _decode(raw)
    try:
        received = datetime.fromtimestamp(received_at_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        received = None
    try:
        ev = model.model_validate_json(text, context={"received_at": received})
    except ValidationError as e:
        if any(err.get("type") == "json_invalid" for err in e.errors(include_url=False)):
            raise Rejected("invalid_json", _summarize(e)) from None
        raise Rejected("invalid_payload", f"{event_type}: {_summarize(e)}") from None
    except RecursionError:
        raise Rejected("invalid_json", "JSON nested too deeply") from None
    mid = _message_id(event_type, ev.event_id)
    source: SourceRefDict = {
        "feed": FEED,
        "message_id": mid,
        "raw_topic": None,
        "message_type": event_type,
        "sent_at": ev.submitted_at.isoformat(),
    }
    result = NormalizeResult(message_id=mid, message_type=event_type)
    policy = policy or DEFAULT_POLICY
    every_event: Any = ev  # each event model has patient_id (a refill's is required, the others' optional)
    patient_id: str | None = every_event.patient_id
    if patient_id is not None and looks_like_ssn(patient_id):
        patient_id = unresolved_id(mid)
        result.warnings.append("patient_unresolved: the portal's patient reference is written like an SSN")
    result.records.append(_map(ev, practice_id, source, patient_id, policy))
    return result


def _clear(text: str | None, policy: IdentityPolicy) -> str | None:
    return text if text is None or policy.ssn_in_clear else scrub_ssn(text)


def _address(a: IntakeAddress | None) -> AddressDict | None:
    if a is None:
        return None
    return {"line": list(a.line), "city": a.city, "state": a.state, "postal_code": a.postal_code, "country": None}


def _map(
    ev: Any, practice_id: str, source: SourceRefDict, patient_id: str | None, policy: IdentityPolicy
) -> Normalized:
    submitted = _ms(ev.submitted_at)
    if isinstance(ev, IntakeSubmission):
        p, ins, appt = ev.patient, ev.insurance, ev.appointment
        sub = ins.subscriber if ins else None
        intake: IntakeFormDict = {
            "practice_id": practice_id,
            "submission_id": ev.submission_id,
            "patient_id": patient_id,
            "family_name": p.family_name,
            "given_name": p.given_name,
            "birth_date": p.birth_date.isoformat(),
            "phone": p.phone,
            "email": p.email,
            "insurance_payer": ins.payer if ins else None,
            "insurance_member_id": ins.member_id if ins else None,
            "insurance_group": ins.group_number if ins else None,
            "reason_for_visit": _clear(ev.reason_for_visit, policy),
            "answers": {k: v if policy.ssn_in_clear else scrub_ssn(v) for k, v in ev.answers.items()},
            "submitted_at": submitted,
            "source": source,
            "sex": p.sex,
            "address": _address(p.address),
            "insurance_payer_id": ins.payer_id if ins else None,
            "subscriber_relationship": sub.relationship if sub else None,
            "subscriber_family_name": sub.family_name if sub else None,
            "subscriber_given_name": sub.given_name if sub else None,
            "subscriber_birth_date": sub.birth_date.isoformat() if sub and sub.birth_date else None,
            "appointment_id": appt.appointment_id if appt else None,
            "appointment_start": appt.start.isoformat() if appt else None,
            "appointment_provider": appt.provider if appt else None,
            "service_type": appt.service_type if appt else None,
        }
        return typed_record("IntakeForm", entity_key(practice_id, patient_id, ev.submission_id), intake)
    if isinstance(ev, RefillRequestPayload):
        pharmacy = None
        if ev.pharmacy is not None:
            extras = [
                x for x in (f"NCPDP {ev.pharmacy.ncpdp_id}" if ev.pharmacy.ncpdp_id else None, ev.pharmacy.phone) if x
            ]
            pharmacy = ev.pharmacy.name + (f" ({', '.join(extras)})" if extras else "")
        refill: RefillRequestDict = {
            "practice_id": practice_id,
            "request_id": ev.request_id,
            "patient_id": patient_id if patient_id is not None else ev.patient_id,  # required: never None here
            "medication": ev.medication.name,
            "medication_code": ev.medication.code,
            "pharmacy": pharmacy,
            "last_filled": ev.last_filled.isoformat() if ev.last_filled else None,
            "note": _clear(ev.note, policy),
            "submitted_at": submitted,
            "source": source,
        }
        return typed_record("RefillRequest", entity_key(practice_id, patient_id, ev.request_id), refill)
    if not isinstance(ev, SchedulingRequestPayload):  # the payload union is closed; a new member must be mapped here
        raise TypeError(f"no mapping for {type(ev).__name__}")
    scheduling: SchedulingRequestDict = {
        "practice_id": practice_id,
        "request_id": ev.request_id,
        "patient_id": patient_id,
        "requested_provider": ev.requested_provider,
        "preferred_times": [w.render() for w in ev.preferred_times],
        "visit_type": ev.visit_type,
        "reason": _clear(ev.reason, policy),
        "submitted_at": submitted,
        "source": source,
    }
    return typed_record("SchedulingRequest", entity_key(practice_id, patient_id, ev.request_id), scheduling)
