"""Pydantic v2 models of the patient-portal webhook bodies (see ``normalize`` for the contract).

Strict on purpose: the portal is our own integration, so anything unexpected is a
bug worth a dead letter rather than a guess. ``extra="forbid"`` (a new field needs a
coordinated change), ``strict=True`` (no ``"5"`` for an int; dates and times still
parse from ISO strings because JSON has no date type), bounded sizes everywhere,
timezone-aware timestamps, and date checks against the time the gateway received
the event (passed in the validation context as ``received_at``: the normalizer never
reads a clock).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

EARLIEST_DATE = date(1900, 1, 1)
EARLIEST_SUBMISSION = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW_S = 24 * 3600  # a submitted_at this far after receipt is a bad clock or a forgery

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
PatientRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=7, max_length=25, pattern=r"^\+?[0-9 ().\-]+$")
]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[A-Za-z]{2,63}$"
    ),
]
AnswerKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
AnswerValue = Annotated[str, StringConstraints(max_length=2000)]

_DIGITS = re.compile(r"\d")


def _received(info: ValidationInfo) -> datetime | None:
    ctx = info.context or {}
    r = ctx.get("received_at")
    return r if isinstance(r, datetime) else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_phone(v: str | None) -> str | None:
    if v is not None and len(_DIGITS.findall(v)) < 7:
        raise ValueError("phone number needs at least 7 digits")
    return v


def _check_past_date(v: date | None, info: ValidationInfo, what: str) -> date | None:
    if v is None:
        return v
    if v < EARLIEST_DATE:
        raise ValueError(f"{what} before {EARLIEST_DATE.isoformat()}")
    received = _received(info)
    if received is not None and v > received.date():
        raise ValueError(f"{what} is in the future")
    return v


class _Event(_Strict):
    submitted_at: AwareDatetime

    @field_validator("submitted_at")
    @classmethod
    def _submitted(cls, v: datetime, info: ValidationInfo) -> datetime:
        if v < EARLIEST_SUBMISSION:
            raise ValueError("submitted_at before 2000-01-01")
        received = _received(info)
        if received is not None and (v - received).total_seconds() > MAX_CLOCK_SKEW_S:
            raise ValueError("submitted_at is more than a day after the event was received")
        return v

    @property
    def event_id(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


# --------------------------------------------------------------------------- intake.submitted
class IntakeAddress(_Strict):
    line: list[Short] = Field(default_factory=list, max_length=3)
    city: Name | None = None
    state: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    postal_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}(-?[0-9]{4})?$")] | None = None


class IntakePatient(_Strict):
    family_name: Name
    given_name: Name
    birth_date: date
    phone: Phone | None = None
    email: Email | None = None
    sex: Annotated[str, StringConstraints(pattern=r"^[FMU]$")] | None = Field(default=None, description="F, M or U")
    address: IntakeAddress | None = None

    @field_validator("birth_date")
    @classmethod
    def _bd(cls, v: date, info: ValidationInfo) -> date:
        return _check_past_date(v, info, "birth_date")  # type: ignore[return-value]

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return _check_phone(v)


class IntakeSubscriber(_Strict):
    """The policy holder when it is not the patient (a child on a parent's plan)."""

    relationship: Annotated[str, StringConstraints(pattern=r"^(self|spouse|child|other)$")]
    family_name: Name | None = None
    given_name: Name | None = None
    birth_date: date | None = None

    @field_validator("birth_date")
    @classmethod
    def _bd(cls, v: date | None, info: ValidationInfo) -> date | None:
        return _check_past_date(v, info, "subscriber birth_date")


class IntakeInsurance(_Strict):
    payer: Short
    member_id: Code
    group_number: Code | None = None
    payer_id: Code | None = Field(default=None, description="the payer's electronic id, when the portal knows it")
    subscriber: IntakeSubscriber | None = None


class IntakeAppointment(_Strict):
    """The visit the intake is for: the eligibility check asks about its date and service type."""

    appointment_id: EventId | None = None
    start: AwareDatetime
    provider: Short | None = None
    service_type: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,2}$")] | None = Field(
        default=None, description="X12 service type code (EQ01), e.g. 30 health benefit plan coverage"
    )


class IntakeSubmission(_Event):
    submission_id: EventId
    patient_id: PatientRef | None = Field(default=None, description="set when a logged-in patient submits")
    patient: IntakePatient
    insurance: IntakeInsurance | None = None
    reason_for_visit: Text | None = None
    answers: dict[AnswerKey, AnswerValue] = Field(default_factory=dict, max_length=100)
    appointment: IntakeAppointment | None = None

    @property
    def event_id(self) -> str:
        return self.submission_id


# --------------------------------------------------------------------------- refill.requested
class RefillMedication(_Strict):
    name: Short
    code: Code | None = Field(default=None, description="RxNorm or NDC, as the portal knows it")


class RefillPharmacy(_Strict):
    name: Short
    ncpdp_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{7}$")] | None = None
    phone: Phone | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return _check_phone(v)


class RefillRequestPayload(_Event):
    request_id: EventId
    patient_id: PatientRef
    medication: RefillMedication
    pharmacy: RefillPharmacy | None = None
    last_filled: date | None = None
    note: Text | None = None

    @field_validator("last_filled")
    @classmethod
    def _lf(cls, v: date | None, info: ValidationInfo) -> date | None:
        return _check_past_date(v, info, "last_filled")

    @property
    def event_id(self) -> str:
        return self.request_id


# --------------------------------------------------------------------------- scheduling.requested
class TimeWindow(_Strict):
    start: AwareDatetime
    end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _order(self) -> TimeWindow:
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end is not None and (self.end - self.start).days > 31:
            raise ValueError("a preferred window may span at most 31 days")
        return self

    def render(self) -> str:
        """ISO 8601: an instant, or an interval ``start/end``."""
        return self.start.isoformat() if self.end is None else f"{self.start.isoformat()}/{self.end.isoformat()}"


class SchedulingRequestPayload(_Event):
    request_id: EventId
    patient_id: PatientRef | None = None
    requested_provider: Short | None = None
    preferred_times: list[TimeWindow] = Field(default_factory=list, max_length=10)
    visit_type: Short | None = None
    reason: Text | None = None

    @property
    def event_id(self) -> str:
        return self.request_id


EVENT_MODELS: dict[str, type[_Event]] = {
    "intake.submitted": IntakeSubmission,
    "refill.requested": RefillRequestPayload,
    "scheduling.requested": SchedulingRequestPayload,
}
ID_FIELDS: dict[str, str] = {
    "intake.submitted": "submission_id",
    "refill.requested": "request_id",
    "scheduling.requested": "request_id",
}


def model_for(event_type: Any) -> type[_Event] | None:
    return EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
