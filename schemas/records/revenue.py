"""Revenue cycle: claims (837), remittance (835), claim status (277), eligibility (271), prior
authorization answers (278), interchange acks (999/TA1) and the denial ledger."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from practiceflow.schemas.records.common import AvroRecord, Coding, SourceRef


class Adjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group: str = Field(description="CAS01: CO, PR, OA, PI, CR")
    reason: str = Field(description="CARC")
    amount: float
    quantity: float | None = None


class ServiceLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    procedure: Coding
    modifiers: list[str] = Field(default_factory=list)
    charge: float | None = None
    paid: float | None = None
    units: float | None = None
    service_date: str | None = None
    adjustments: list[Adjustment] = Field(default_factory=list)
    remark_codes: list[str] = Field(default_factory=list, description="RARC (LQ*HE)")
    control_number: str | None = None
    allowed: float | None = Field(default=None, description="the payer's allowed amount (835 AMT*B6, FHIR 'eligible')")


class Claim(AvroRecord):
    """A claim the practice submitted (837, FHIR Claim)."""

    __avro_name__ = "Claim"
    practice_id: str
    claim_id: str
    patient_id: str | None = None
    payer_id: str | None = None
    payer_name: str | None = None
    total_charge: float | None = None
    service_date: str | None = None
    diagnoses: list[Coding] = Field(default_factory=list)
    lines: list[ServiceLine] = Field(default_factory=list)
    status: str | None = None
    source: SourceRef
    use: str | None = Field(default=None, description="claim | preauthorization | predetermination")
    member_id: str | None = Field(
        default=None, description="the subscriber's member id (837 2010BA NM109), for the identity crosswalk"
    )
    frequency_code: str | None = Field(
        default=None, description="837 CLM05-3: 1 original, 7 replacement of a prior claim, 8 void"
    )
    place_of_service: str | None = Field(default=None, description="837P CLM05-1 (CMS place-of-service code)")
    payer_claim_control_number: str | None = Field(
        default=None, description="837 2300 REF*F8: the payer's control number of the claim a replacement/void corrects"
    )
    authorization_number: str | None = Field(default=None, description="837 2300 REF*G1: prior authorization number")


class ClaimAdjudication(AvroRecord):
    """A payer's decision on one claim (835 CLP loop, ClaimResponse, EOB)."""

    __avro_name__ = "ClaimAdjudication"
    practice_id: str
    claim_id: str = Field(description="the practice's claim id (CLP01)")
    adjudication_id: str = Field(description="stable: payment trace + claim id + payer control number")
    patient_id: str | None = None
    patient_name: str | None = None
    member_id: str | None = None
    payer_id: str | None = None
    payer_name: str | None = None
    payee_npi: str | None = None
    status_code: str | None = Field(default=None, description="CLP02: 1 primary, 4 denied, 22 reversal, ...")
    total_charge: float | None = None
    paid: float | None = None
    patient_responsibility: float | None = None
    payer_claim_control_number: str | None = None
    reversal: bool = False
    adjustments: list[Adjustment] = Field(default_factory=list)
    remark_codes: list[str] = Field(default_factory=list)
    lines: list[ServiceLine] = Field(default_factory=list)
    payment_trace: str | None = None
    payment_date: str | None = None
    service_date: str | None = None
    source: SourceRef
    outcome: str | None = Field(
        default=None, description="FHIR ClaimResponse/EOB outcome: queued, complete, error, partial"
    )
    authorization_number: str | None = Field(
        default=None, description="prior-auth reference (835 REF*G1, FHIR preAuthRef or PAS reviewAction number)"
    )
    use: str | None = Field(
        default=None,
        description="FHIR ClaimResponse/EOB use: claim | preauthorization (a Da Vinci PAS answer) | predetermination",
    )


class ProviderAdjustment(AvroRecord):
    """An 835 PLB line: money the payer moved outside any one claim."""

    __avro_name__ = "ProviderAdjustment"
    practice_id: str
    adjustment_id: str
    provider_id: str
    fiscal_period_end: str | None = None
    reason: str
    reference: str | None = None
    amount: float
    payment_trace: str | None = None
    source: SourceRef


class DenialLedgerEntry(AvroRecord):
    """Money of one 835 claim in one denial category, and what became of it.

    Written by the denial workflow when an 835 is categorized and again whenever the
    entry's outcome changes (a later 835 pays it, a person approves a write-off): the
    topic is compacted by ``practice/entry_id`` and ClickHouse keeps the latest row
    (``updated_at``). Amounts are US dollars."""

    __avro_name__ = "DenialLedgerEntry"
    practice_id: str
    entry_id: str = Field(description="stable: adjudication id + category")
    claim_id: str
    adjudication_id: str
    payer_id: str | None = None
    payer_name: str | None = None
    category: str = Field(description="a denial category (rules/denials) or provider_adjustment (PLB)")
    rule_ids: list[str] = Field(default_factory=list, description="rule id@version that decided each adjustment")
    reason_codes: list[str] = Field(default_factory=list, description="group-CARC (CO-197) and RARC codes")
    adjusted: float = Field(default=0.0, description="sum of the category's adjustments on this claim")
    denied: float = Field(default=0.0, description="what the payer did not pay for a denial reason")
    recoverable: float = Field(default=0.0, description="denied money a corrected claim or appeal can recover")
    recovered: float = Field(default=0.0, description="paid by a later 835 of the same claim")
    written_off: float = Field(default=0.0, description="contractual adjustment (write-off recommended/approved)")
    patient_responsibility: float = Field(default=0.0, description="moved to the patient's balance")
    net_paid_before: float = Field(default=0.0, description="the claim's net payment when the entry was opened")
    state: str = Field(description="open | recovered | partially_recovered | written_off | transferred | closed")
    action: str | None = Field(
        default=None, description="corrected_claim | appeal | transfer_to_patient | write_off | review"
    )
    denied_on: str | None = Field(default=None, description="835 payment date (BPR16), ISO date")
    resolved_on: str | None = None
    days_to_resolution: int | None = None
    item_id: str | None = Field(default=None, description="the work item that follows the entry up")
    updated_at: int
    source: SourceRef


class ClaimStatus(AvroRecord):
    """A claim status (277 / 277CA)."""

    __avro_name__ = "ClaimStatus"
    practice_id: str
    status_id: str
    claim_id: str | None = None
    payer_claim_control_number: str | None = None
    patient_name: str | None = None
    category_code: str | None = Field(default=None, description="STC01-1, e.g. A1, A7, F2, P3")
    status_code: str | None = Field(default=None, description="STC01-2")
    entity_code: str | None = None
    status_date: str | None = None
    total_charge: float | None = None
    paid: float | None = None
    accepted: bool | None = None
    payer_name: str | None = None
    source: SourceRef


class Benefit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    info_code: str = Field(description="EB01: 1 active, 6 inactive, A co-insurance, B co-payment, C deductible, ...")
    coverage_level: str | None = None
    service_types: list[str] = Field(default_factory=list)
    insurance_type: str | None = None
    plan_description: str | None = None
    time_period: str | None = None
    amount: float | None = None
    percent: float | None = None
    in_network: str | None = None
    messages: list[str] = Field(default_factory=list)
    authorization_required: bool | None = Field(
        default=None, description="EB11: Y prior authorization or certification required, N not required"
    )


class EligibilityResponse(AvroRecord):
    """A 271 answer (or FHIR CoverageEligibilityResponse) for one subscriber/dependent."""

    __avro_name__ = "EligibilityResponse"
    practice_id: str
    response_id: str
    trace_number: str | None = None
    payer_id: str | None = None
    payer_name: str | None = None
    member_id: str | None = None
    patient_name: str | None = None
    birth_date: str | None = None
    active: bool | None = None
    benefits: list[Benefit] = Field(default_factory=list)
    rejections: list[str] = Field(default_factory=list, description="AAA03 reject reason codes")
    source: SourceRef
    patient_id: str | None = Field(
        default=None,
        description="the practice's id echoed back: 2100C/D REF*EA (MRN), else REF*EJ (patient account number)",
    )
    follow_up_actions: list[str] = Field(
        default_factory=list, description="AAA04 follow-up action codes, in the order of rejections"
    )
    plan_begin: str | None = Field(default=None, description="DTP*346 / 356 (2100C/D): plan or eligibility begin")
    plan_end: str | None = Field(default=None, description="DTP*347 / 357 (2100C/D): plan or eligibility end")


class AuthorizationResponse(AvroRecord):
    """A payer's answer to a prior-authorization request (X12 278 response, 005010X217).

    The prior-authorization workflow (``streams/workflows/prior_auth.py``) finds its
    authorization by ``trace_number`` (the request's 2000E TRN02, echoed by the payer)."""

    __avro_name__ = "AuthorizationResponse"
    practice_id: str
    response_id: str
    trace_number: str | None = Field(default=None, description="2000E TRN02: the request's trace, echoed")
    reference: str | None = Field(default=None, description="BHT03")
    payer_id: str | None = None
    payer_name: str | None = None
    member_id: str | None = None
    patient_name: str | None = None
    action_code: str | None = Field(default=None, description="HCR01: A1 certified, A3 not certified, A4 pended, ...")
    decision: str = Field(description="approved | partially_approved | denied | pended | modified | cancelled | ...")
    authorization_number: str | None = Field(default=None, description="HCR02: the payer's review number")
    reason_code: str | None = Field(default=None, description="HCR03")
    service_codes: list[str] = Field(default_factory=list, description="SV1/SV2 procedure codes of the service loops")
    messages: list[str] = Field(default_factory=list)
    rejections: list[str] = Field(default_factory=list, description="AAA03 reject reason codes")
    source: SourceRef


class InterchangeAck(AvroRecord):
    """A 999 / TA1: did the clearinghouse accept the files we sent?"""

    __avro_name__ = "InterchangeAck"
    practice_id: str
    ack_id: str
    kind: str = Field(description="999 | TA1")
    accepted: str | None = Field(default=None, description="A, E, P, R")
    acknowledged_control_numbers: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    source: SourceRef
