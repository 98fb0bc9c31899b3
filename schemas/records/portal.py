"""What patients send through the portal: intake forms, refill and scheduling requests."""

from __future__ import annotations

from pydantic import Field

from practiceflow.schemas.records.clinical import Address
from practiceflow.schemas.records.common import AvroRecord, SourceRef


class IntakeForm(AvroRecord):
    __avro_name__ = "IntakeForm"
    practice_id: str
    submission_id: str
    patient_id: str | None = None
    family_name: str
    given_name: str
    birth_date: str
    phone: str | None = None
    email: str | None = None
    insurance_payer: str | None = None
    insurance_member_id: str | None = None
    insurance_group: str | None = None
    reason_for_visit: str | None = None
    answers: dict[str, str] = Field(default_factory=dict)
    submitted_at: int
    source: SourceRef
    sex: str | None = Field(default=None, description="administrative sex as the portal sent it: F, M, U")
    address: Address | None = None
    insurance_payer_id: str | None = Field(
        default=None, description="the payer's id (NM1*PR09) when the portal knows it"
    )
    subscriber_relationship: str | None = Field(
        default=None, description="self | spouse | child | other: the patient's relation to the insurance subscriber"
    )
    subscriber_family_name: str | None = None
    subscriber_given_name: str | None = None
    subscriber_birth_date: str | None = None
    appointment_id: str | None = Field(default=None, description="the visit the intake is for, when booked")
    appointment_start: str | None = Field(default=None, description="ISO date-time of that visit")
    appointment_provider: str | None = None
    service_type: str | None = Field(default=None, description="X12 service type code to ask about (EQ01), e.g. 30")


class RefillRequest(AvroRecord):
    __avro_name__ = "RefillRequest"
    practice_id: str
    request_id: str
    patient_id: str
    medication: str
    medication_code: str | None = None
    pharmacy: str | None = None
    last_filled: str | None = None
    note: str | None = None
    submitted_at: int
    source: SourceRef


class SchedulingRequest(AvroRecord):
    __avro_name__ = "SchedulingRequest"
    practice_id: str
    request_id: str
    patient_id: str | None = None
    requested_provider: str | None = None
    preferred_times: list[str] = Field(default_factory=list)
    visit_type: str | None = None
    reason: str | None = None
    submitted_at: int
    source: SourceRef
