"""The records that travel between practiceflow's topics, as pydantic models.

These models are the single source of the Avro contracts: ``schemas/avro/*.avsc``
are generated from them (``practiceflow schemas export``) and committed, and a test
fails when the committed files drift from the models or stop being backward
compatible with their previous committed version. Hot paths (the HL7 and X12
normalizers) build plain dicts of the same shape for speed; tests validate those
dicts against the .avsc files.

Conventions: every record carries ``practice_id`` (the tenant) and is keyed by
practice so one practice's records stay ordered. Clinical and business dates stay
strings in ISO 8601 at the precision the source gave (HL7 and X12 dates are often
partial); machine times (``*_at``) are epoch milliseconds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AvroRecord(BaseModel):
    """Base for every topic record; ``__avro_name__`` is the Avro record name."""

    model_config = ConfigDict(extra="forbid")
    __avro_name__: str = ""
    __avro_doc__: str = ""


class Coding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = None
    code: str | None = None
    display: str | None = None


class Identifier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str
    system: str | None = None
    type: str | None = None


class SourceRef(BaseModel):
    """Where a normalized record came from, so a person can find the original."""

    model_config = ConfigDict(extra="forbid")
    feed: str
    message_id: str
    raw_topic: str | None = None
    message_type: str | None = None
    sent_at: str | None = None


# --------------------------------------------------------------------------- raw + errors
class RawMessage(AvroRecord):
    """The bytes a gateway accepted, exactly as received, before any parsing."""

    __avro_name__ = "RawMessage"
    practice_id: str
    feed: str = Field(description="hl7v2 | fhir | fax | portal | x12")
    message_id: str = Field(description="stable id: a hash of the content, or the sender's control id")
    received_at: int = Field(description="epoch milliseconds")
    content_type: str
    payload: bytes = Field(description="the bytes; empty when they were claim-checked (see payload_uri)")
    headers: dict[str, str] = Field(default_factory=dict)
    payload_uri: str | None = Field(
        default=None,
        description="claim check: the payload was larger than claim_check_bytes and is in the document store here",
    )
    payload_size: int | None = Field(default=None, description="claim check: length of the stored payload in bytes")
    payload_sha256: str | None = Field(default=None, description="claim check: SHA-256 (hex) of the stored payload")


class DeadLetter(AvroRecord):
    """An input that could not become a normalized record, with the original bytes."""

    __avro_name__ = "DeadLetter"
    practice_id: str
    feed: str
    stage: str = Field(description="gateway | parse | normalize | process | sink")
    reason_code: str
    reason: str
    payload: bytes
    message_id: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    failed_at: int
    details: dict[str, str] = Field(default_factory=dict)
    payload_uri: str | None = Field(
        default=None, description="the whole original in the document store when payload holds only its head or nothing"
    )
    payload_size: int | None = Field(default=None, description="length of the whole original in bytes")
    payload_sha256: str | None = Field(default=None, description="SHA-256 (hex) of the whole original")


# --------------------------------------------------------------------------- clinical entities
class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line: list[str] = Field(default_factory=list)
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class Patient(AvroRecord):
    __avro_name__ = "Patient"
    practice_id: str
    patient_id: str = Field(
        description="the practice's canonical id (the MRN its identity policy chose; FHIR: the logical id), "
        "or 'unresolved:<message>' when no identifier may key the patient (processors/identity)"
    )
    identifiers: list[Identifier] = Field(
        default_factory=list, description="every identifier, typed; SSNs masked to the last four unless opted in"
    )
    family_name: str | None = None
    given_names: list[str] = Field(default_factory=list)
    birth_date: str | None = None
    sex: str | None = None
    address: Address | None = None
    phones: list[str] = Field(default_factory=list)
    deceased: bool = False
    merged_from: list[str] = Field(default_factory=list, description="MRNs merged into this one (ADT A40)")
    event: str | None = Field(default=None, description="ADT trigger or FHIR interaction")
    source: SourceRef


class Coverage(AvroRecord):
    __avro_name__ = "Coverage"
    practice_id: str
    patient_id: str
    coverage_id: str
    payer_id: str | None = None
    payer_name: str | None = None
    plan_name: str | None = None
    member_id: str | None = None
    group_number: str | None = None
    subscriber_relationship: str | None = None
    period_start: str | None = None
    period_end: str | None = None
    status: str | None = None
    source: SourceRef


class Encounter(AvroRecord):
    __avro_name__ = "Encounter"
    practice_id: str
    patient_id: str
    encounter_id: str
    status: str | None = None
    encounter_class: str | None = None
    event: str | None = None
    location: str | None = None
    attending_provider: str | None = None
    admit_at: str | None = None
    discharge_at: str | None = None
    reason: str | None = None
    source: SourceRef


class Observation(AvroRecord):
    __avro_name__ = "Observation"
    practice_id: str
    patient_id: str
    observation_id: str = Field(description="stable: order id + set id + code")
    order_id: str | None = None
    code: Coding
    value_type: str | None = None
    value: str | None = None
    value_numeric: float | None = None
    units: str | None = None
    reference_range: str | None = None
    abnormal_flags: list[str] = Field(default_factory=list)
    status: str | None = None
    effective_at: str | None = None
    performer: str | None = None
    notes: list[str] = Field(default_factory=list)
    source: SourceRef


class Condition(AvroRecord):
    __avro_name__ = "Condition"
    practice_id: str
    patient_id: str
    condition_id: str
    code: Coding
    clinical_status: str | None = None
    verification_status: str | None = None
    onset: str | None = None
    recorded_at: str | None = None
    source: SourceRef


class AllergyIntolerance(AvroRecord):
    """An allergy or intolerance (HL7 AL1 in ADT/ORM/OML, FHIR AllergyIntolerance).

    Its own record, not a Condition: the allergen, its type and the reactions are what
    prescribing checks read, and a Condition has no place for them."""

    __avro_name__ = "AllergyIntolerance"
    practice_id: str
    patient_id: str
    allergy_id: str = Field(description="stable per patient and allergen, so an update rewrites the same record")
    allergen: Coding = Field(description="AL1-3 / FHIR code")
    allergen_type: str | None = Field(
        default=None,
        description="the sender's allergen type (AL1-2, table 0127: DA drug, FA food, EA environmental...)",
    )
    category: str | None = Field(default=None, description="FHIR category: medication | food | environment | biologic")
    severity: str | None = Field(default=None, description="mild | moderate | severe, else the sender's AL1-4 text")
    criticality: str | None = Field(default=None, description="FHIR criticality: low | high | unable-to-assess")
    reactions: list[str] = Field(default_factory=list, description="AL1-5 repetitions / FHIR reaction manifestations")
    identified_at: str | None = Field(
        default=None, description="AL1-6 identification date / FHIR onset or recordedDate"
    )
    clinical_status: str | None = None
    verification_status: str | None = None
    source: SourceRef


class ImmunizationObservation(BaseModel):
    """One OBX that travels with an RXA (funding eligibility, funding source, VIS
    document type, publication and presentation dates, ...). Kept inside the
    Immunization, not as Observation records: these describe the administration
    itself, mean nothing apart from it, and FHIR carries them inside the
    Immunization too (programEligibility, fundingSource, education)."""

    model_config = ConfigDict(extra="forbid")
    code: Coding = Field(description="OBX-3, e.g. LOINC 64994-7 funding eligibility, 69764-9 VIS document type")
    value_type: str | None = None
    value: str | None = Field(default=None, description="the value as text (coded values: display (code))")
    value_code: Coding | None = Field(default=None, description="OBX-5 when coded (CE/CWE)")
    sub_id: str | None = Field(default=None, description="OBX-4: groups a VIS document with its dates")
    effective_at: str | None = None


class Immunization(AvroRecord):
    """A vaccine given, recorded as historical, or refused (VXU^V04 RXA, FHIR Immunization).

    Not an Observation: an immunization has a lot, a manufacturer, a site, a route and
    an administered amount, and public-health reporting reads those."""

    __avro_name__ = "Immunization"
    practice_id: str
    patient_id: str
    immunization_id: str = Field(description="ORC-3 filler order number (the IIS's id), else ORC-2, else a hash")
    vaccine: Coding = Field(description="RXA-5 (CVX; NDC where the sender uses it)")
    status: str | None = Field(default=None, description="FHIR status: completed | not-done | entered-in-error")
    completion_status: str | None = Field(default=None, description="RXA-20 as sent: CP, PA, RE, NA")
    status_reason: str | None = Field(default=None, description="why not given: RXA-18 refusal reason")
    administered_at: str | None = Field(default=None, description="RXA-3 / occurrenceDateTime")
    amount: float | None = Field(default=None, description="RXA-6 (999 = unknown is left empty)")
    amount_units: str | None = None
    lot_number: str | None = None
    expiration_date: str | None = None
    manufacturer: Coding | None = Field(default=None, description="RXA-17 (MVX)")
    site: str | None = Field(default=None, description="RXR-2 administration site")
    route: str | None = Field(default=None, description="RXR-1 route")
    performer: str | None = Field(default=None, description="RXA-10 administering provider")
    ordering_provider: str | None = None
    location: str | None = Field(default=None, description="RXA-11 administered-at location")
    primary_source: bool | None = Field(
        default=None, description="RXA-9 00 (new record) -> true; historical/reported -> false"
    )
    information_source: str | None = None
    funding_eligibility: Coding | None = Field(default=None, description="OBX 64994-7 (VFC eligibility)")
    funding_source: Coding | None = Field(default=None, description="OBX 30963-3")
    observations: list[ImmunizationObservation] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    source: SourceRef


class Order(AvroRecord):
    """A lab/imaging/service order (ORM, OML, ServiceRequest)."""

    __avro_name__ = "Order"
    practice_id: str
    patient_id: str
    order_id: str
    placer_order_number: str | None = None
    filler_order_number: str | None = None
    control: str | None = Field(default=None, description="ORC-1: NW, CA, SC, ...")
    status: str | None = None
    code: Coding | None = None
    ordering_provider: str | None = None
    ordered_at: str | None = None
    priority: str | None = None
    diagnoses: list[Coding] = Field(default_factory=list)
    source: SourceRef


class MedicationOrder(AvroRecord):
    """A prescription (RDE O11, OMP O09, MedicationRequest)."""

    __avro_name__ = "MedicationOrder"
    practice_id: str
    patient_id: str
    order_id: str
    medication: Coding
    dose: str | None = None
    dose_units: str | None = None
    route: str | None = None
    frequency: str | None = None
    quantity: str | None = None
    refills: int | None = None
    prescriber: str | None = None
    status: str | None = None
    written_at: str | None = None
    instructions: str | None = None
    source: SourceRef


class Appointment(AvroRecord):
    __avro_name__ = "Appointment"
    practice_id: str
    patient_id: str | None = None
    appointment_id: str
    event: str | None = Field(default=None, description="S12 booked, S13 rescheduled, S14 modified, S15 cancelled")
    status: str | None = None
    start: str | None = None
    duration_minutes: int | None = None
    appointment_type: str | None = None
    reason: str | None = None
    provider: str | None = None
    location: str | None = None
    source: SourceRef


class DocumentPage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int
    text: str
    confidence: float | None = Field(
        default=None,
        description="OCR confidence 0..1: word confidence weighted by ink, unread ink counting 0 "
        "(processors/fax/quality.py); mean word confidence where no quality signal was computed",
    )
    ocr: bool = False
    word_confidence: float | None = Field(default=None, description="Tesseract's mean word confidence 0..1")
    ink_coverage: float | None = Field(
        default=None, description="share of the page's text ink inside recognised words 0..1"
    )
    needs_human_read: bool | None = Field(
        default=None, description="OCR text not trustworthy (confidence < 0.75): a person must read the page"
    )


class Document(AvroRecord):
    """A clinical document: MDM note, inbound fax, FHIR DocumentReference."""

    __avro_name__ = "Document"
    practice_id: str
    document_id: str
    patient_id: str | None = None
    kind: str | None = None
    title: str | None = None
    status: str | None = None
    content_type: str | None = None
    storage_uri: str | None = None
    sha256: str | None = None
    page_count: int | None = None
    text: str | None = None
    pages: list[DocumentPage] = Field(default_factory=list)
    ocr_confidence: float | None = None
    fax_from: str | None = None
    fax_to: str | None = None
    authored_at: str | None = None
    source: SourceRef
    needs_human_read: bool | None = Field(
        default=None, description="any OCRed page flagged needs_human_read: do not act on the text alone"
    )
    searchable_pdf_uri: str | None = Field(
        default=None, description="OCRmyPDF's searchable PDF of this document, kept in the document store"
    )
    ocr_status: str | None = Field(
        default=None,
        description="complete | partial_page_limit (only the first ocr_max_pages pages were OCRed) | "
        "timed_out (OCR stopped at ocr_timeout_seconds; no text) | none (not OCRed)",
    )


# --------------------------------------------------------------------------- revenue cycle
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
        default=None, description="prior-auth reference (835 REF*G1, FHIR preAuthRef)"
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


# --------------------------------------------------------------------------- patient portal
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


# --------------------------------------------------------------------------- fax classification
class FaxGuess(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    probability: float


class FaxExtractedValue(BaseModel):
    """One value read from a fax page: ``text[start:end]`` of page ``page`` holds it."""

    model_config = ConfigDict(extra="forbid")
    field: str
    value: str
    page: int
    start: int
    end: int
    source: str = Field(default="rules", description="rules | the model that read it")


class FaxClassification(AvroRecord):
    """One document inside a faxed transmission: its pages, class, patient match and routing.

    Written by the fax step (``processors/workflows/fax``) beside the fax's Document; one per
    document the transmission was split into (a cover sheet, a referral, a payer letter...)."""

    __avro_name__ = "FaxClassification"
    practice_id: str
    classification_id: str = Field(description="stable: the fax Document id (prefix) + document index")
    document_id: str = Field(description="the fax's Document record (sha256 of the fax bytes)")
    storage_uri: str | None = None
    segment_index: int = 0
    pages: list[int] = Field(default_factory=list, description="pages of the fax that make up this document")
    page_labels: list[str] = Field(default_factory=list, description="each page's class ('?' = abstained)")
    doc_class: str = Field(description="lab_result | referral | prior_auth_response | records_request | ...")
    kind: str = Field(
        description="finer kind: pa.denied, records.sent_to_us, lab.abnormal, insurance.correspondence..."
    )
    confidence: float = Field(description="calibrated probability of doc_class (mean over its pages)")
    abstained: bool = Field(description="confidence below the model's calibrated threshold: a person decides")
    guesses: list[FaxGuess] = Field(default_factory=list, description="top three classes with probabilities")
    queue: str = Field(description="where it went: a work-item queue, refill_triage, filed or none")
    priority: str = "routine"
    routing_reason: str = ""
    patient_match: str = Field(description="matched | unverified | ambiguous | none | not_needed")
    patient_id: str | None = None
    match_candidates: list[str] = Field(default_factory=list)
    misdirected: bool = False
    pages_announced: int | None = Field(default=None, description="what the cover sheet said, cover included")
    pages_received: int = 0
    missing_pages: bool = Field(default=False, description="the cover sheet announced more pages than arrived")
    fax_from: str | None = None
    sender_fax: str | None = Field(default=None, description="the sender's fax number as printed on the document")
    extracted: list[FaxExtractedValue] = Field(default_factory=list)
    model_id: str = ""
    extractor: str = "rules"
    needs_human_read: bool = False
    source: SourceRef


# --------------------------------------------------------------------------- identity
class IdentityLink(AvroRecord):
    """Identifiers that name the same patient (or stop doing so), for the crosswalk.

    Emitted when a message links identifiers: a Patient with an MRN plus other ids, a
    FHIR Patient (logical id + identifiers), a claim (CLM01/CLP01 + member id + MRN),
    coverage and eligibility (member id + MRN), ADT^A24 link / A37 unlink (two PIDs),
    A40 merge. ``processors/identity/crosswalk.py`` folds these into one canonical
    patient id per practice. SSNs appear only masked (never as a crosswalk key).
    """

    __avro_name__ = "IdentityLink"
    practice_id: str
    link_id: str = Field(description="stable: hash of message id + action + identifiers")
    action: str = Field(description="link | unlink | merge")
    patient_id: str | None = Field(default=None, description="the canonical id of the first side, when known")
    identifiers: list[Identifier] = Field(default_factory=list, description="the first side's identifiers")
    other_patient_id: str | None = Field(default=None, description="A24/A37/A40: the second patient's id")
    other_identifiers: list[Identifier] = Field(default_factory=list)
    record_type: str | None = Field(default=None, description="the record the link was read from")
    source: SourceRef


# --------------------------------------------------------------------------- outputs
class Evidence(BaseModel):
    """One fact a work item rests on, typed so a staff tool can show it and link to it.

    ``label``/``ref``/``excerpt`` are the human-readable form every item has had since
    contract version 1. Version 2 adds where the fact lives (record type and key, or a
    document page and text span) and the value used, so a person can check the
    software's reading against the source instead of trusting it."""

    model_config = ConfigDict(extra="forbid")
    label: str
    ref: str | None = None
    excerpt: str | None = None
    record_type: str | None = Field(default=None, description="Observation | Encounter | MedicationOrder | ...")
    record_key: str | None = Field(default=None, description="the record's topic key (practice/patient/entity)")
    value: str | None = Field(default=None, description="the value the rule or model used, as text")
    unit: str | None = None
    reference_range: str | None = None
    flags: list[str] = Field(default_factory=list, description="the sender's abnormal flags")
    observed_at: str | None = Field(default=None, description="clinical/business time, ISO 8601 at source precision")
    assessment: str | None = Field(
        default=None,
        description="what the rule made of it: present | missing | abnormal | stale | mismatch | met | not_met "
        "| insufficient | info",
    )
    document_uri: str | None = Field(default=None, description="source document in the document store")
    page: int | None = Field(default=None, description="1-based page of the source document")
    span_start: int | None = Field(default=None, description="character offset of the value in the page text")
    span_end: int | None = None


class DecisionOption(BaseModel):
    """One choice a person can make on a work item (processors/workflows/workitem.py OPTIONS)."""

    model_config = ConfigDict(extra="forbid")
    option: str = Field(description="approve | edit | reject | acknowledge | pick | new_patient | reply | file | ...")
    label: str
    target: str | None = Field(default=None, description="what the option refers to (a draft id, a candidate id)")
    editable_fields: list[str] = Field(
        default_factory=list, description="for edit: the draft fields a person may change"
    )


class ProducedBy(BaseModel):
    """The rule (id, version, source) or model (name, version, prompt version) behind an output."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="rule | model | person")
    rule_id: str | None = None
    rule_version: str | None = None
    rule_source: str | None = Field(default=None, description="where the rule comes from (a protocol, a code table)")
    model: str | None = None
    model_version: str | None = None
    prompt_version: str | None = None
    confidence: float | None = None


class HandoffItem(AvroRecord):
    """A unit of work for a person: what happened, what was done, what they must decide.

    The work-item contract of every workflow (docs: README "Work items"). Keyed by
    practice/item_id in a compacted topic: the latest revision of an item wins, and a
    replay writes the same item_id and revision again rather than a second item."""

    __avro_name__ = "HandoffItem"
    practice_id: str
    item_id: str = Field(description="stable: workflow + subject, so replays update rather than duplicate")
    workflow: str
    queue: str = Field(
        description="the role that acts: front_desk | clinician | nurse | billing | referrals | records | triage "
        "| misdirected (processors/workflows/workitem.py QUEUES)"
    )
    priority: str = "routine"
    title: str
    what_happened: str
    actions_taken: list[str] = Field(default_factory=list)
    decision_needed: str | None = None
    patient_id: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    created_at: int
    source: SourceRef
    corrected: bool = Field(
        default=False, description="a corrected/amended result replaced the earlier item with this item_id"
    )
    contract_version: int = Field(default=1, description="1: results review (2026-11); 2: the workflow contract")
    kind: str | None = Field(default=None, description="workflow-specific kind, e.g. refill.routine")
    state: str = Field(default="open", description="open | in_progress | done | rejected | superseded")
    revision: int = Field(default=1, description="grows with every change of the item; consumers keep the highest")
    due_at: int | None = Field(default=None, description="epoch ms by which a person should act")
    supersedes: str | None = Field(default=None, description="the item_id this item replaces")
    proposed_action: str | None = Field(default=None, description="what the software proposes, in words")
    draft_ids: list[str] = Field(default_factory=list, description="Draft records (topic drafts) awaiting sign-off")
    options: list[DecisionOption] = Field(default_factory=list)
    produced_by: ProducedBy | None = None
    assigned_to: str | None = None
    decision_id: str | None = Field(default=None, description="the StaffDecision that closed or moved the item")
    outcome: str | None = Field(default=None, description="the option chosen, once decided")
    updated_at: int | None = None


class Draft(AvroRecord):
    """Something the software prepared for a person to sign off: a FHIR resource, an X12
    transaction, a letter. Nothing in a draft leaves the practice without a decision."""

    __avro_name__ = "Draft"
    practice_id: str
    draft_id: str = Field(description="stable: workflow + subject + kind")
    item_id: str = Field(description="the work item that asks for the sign-off")
    workflow: str
    kind: str = Field(description="fhir.MedicationRequest | fhir.Patient | fhir.Coverage | x12.270 | x12.837P | letter")
    content_type: str = Field(description="application/fhir+json | application/edi-x12 | text/plain | application/pdf")
    body: str = Field(default="", description="the draft itself (JSON, X12 text); empty when document_uri holds it")
    document_uri: str | None = Field(default=None, description="binary drafts (PDF letters) in the document store")
    patient_id: str | None = None
    status: str = Field(default="draft", description="draft | approved | rejected | sent | superseded")
    produced_by: ProducedBy | None = None
    created_at: int
    source: SourceRef | None = None


class StaffDecision(AvroRecord):
    """A person's decision on a work item, from the CLI, the EHR (Task status) or a staff tool."""

    __avro_name__ = "StaffDecision"
    practice_id: str
    decision_id: str = Field(description="stable per decision: channel + item + the channel's own id")
    item_id: str
    item_revision: int | None = Field(default=None, description="the revision the person saw")
    option: str = Field(description="one of the item's options")
    actor: str = Field(description="who decided (user id, never a patient identifier)")
    actor_role: str | None = None
    edits: dict[str, str] = Field(default_factory=dict, description="for edit: field -> new value")
    comment: str | None = None
    channel: str = Field(default="cli", description="cli | fhir | api")
    decided_at: int


class WorkflowCommand(AvroRecord):
    """A side effect a workflow asks for (send a 270, call the LLM, write to the EHR).

    ``command_id`` is the idempotency key: the executor performs each id at most once,
    so replaying the workflow's log re-emits the command but never re-sends it."""

    __avro_name__ = "WorkflowCommand"
    practice_id: str
    command_id: str = Field(description="idempotency key: kind + workflow + subject (processors/workflows/commands.py)")
    kind: str = Field(description="eligibility | llm | ehr_write | ... (one topic cmd.<kind> each)")
    workflow: str
    item_id: str | None = None
    patient_id: str | None = None
    payload_type: str = Field(description="what payload holds: x12.270 | llm.request | fhir.Task | ...")
    payload: str = Field(description="the request, as text (X12, JSON)")
    params: dict[str, str] = Field(default_factory=dict, description="routing: payer id, endpoint name, ...")
    issued_at: int
    deadline_at: int | None = Field(default=None, description="after this the executor answers timeout")
    source: SourceRef | None = None


class CommandResult(AvroRecord):
    """What became of one command: its answer, or why there is none."""

    __avro_name__ = "CommandResult"
    practice_id: str
    command_id: str
    kind: str
    workflow: str
    outcome: str = Field(description="ok | failed | timeout | refused")
    reason: str | None = None
    payload_type: str | None = None
    payload: str = ""
    attempts: int = 1
    latency_ms: float | None = None
    completed_at: int
    params: dict[str, str] = Field(
        default_factory=dict,
        description="the command's params, echoed: the workflow reads its answer without looking the command up",
    )


class AuditEvent(AvroRecord):
    """Who did what, when and why; ``hash`` chains to ``prev_hash`` per practice."""

    __avro_name__ = "AuditEvent"
    practice_id: str
    event_id: str
    at: int
    actor: str
    action: str
    entity_type: str
    entity_id: str
    reason: str
    outcome: str = "ok"
    details: dict[str, str] = Field(default_factory=dict)
    prev_hash: str | None = None
    hash: str | None = None


class FlowEvent(AvroRecord):
    """One message passing one stage; the analytics tables count these."""

    __avro_name__ = "FlowEvent"
    practice_id: str
    message_id: str
    feed: str
    stage: str = Field(description="accepted | normalized | dead_lettered | handoff | duplicate")
    record_type: str | None = None
    records: int = 0
    latency_ms: float | None = None
    at: int


class PilotComparison(AvroRecord):
    """Pilot (shadow) mode: one work item's proposal against what staff did (processors/pilot/compare.py).

    Keyed ``practice/item_id`` (compacted): one verdict per item, the first decision that gave one."""

    __avro_name__ = "PilotComparison"
    practice_id: str
    item_id: str
    workflow: str
    kind: str = Field(description="the item's class, e.g. refill.routine, fax.lab_result")
    queue: str = Field(description="where the agent routed it")
    rule_id: str = Field(description="the rule (or model) that produced the proposal")
    rule_version: str
    staff_option: str = Field(description="what staff chose: approve, edit, reject, file, ...")
    staff_queue: str = Field(default="", description="where staff filed it instead, if elsewhere")
    staff_channel: str = Field(default="cli", description="cli | ehr | staff_tool | scripted")
    decision_id: str
    verdict: str = Field(description="agree | disagree | no_verdict")
    why: str = ""
    minutes: float = Field(default=0.0, description="documented staff minutes per task (rules/pilot/tasks.yaml)")
    minutes_saved: float = Field(default=0.0, description="minutes when staff agreed, else 0")
    task_rule: str = Field(default="", description="the pilot rule id@version that judged it")
    decided_at: int


ALL_RECORDS: tuple[type[AvroRecord], ...] = (
    RawMessage,
    DeadLetter,
    Patient,
    Coverage,
    Encounter,
    Observation,
    Condition,
    AllergyIntolerance,
    Immunization,
    Order,
    MedicationOrder,
    Appointment,
    Document,
    Claim,
    ClaimAdjudication,
    ProviderAdjustment,
    DenialLedgerEntry,
    ClaimStatus,
    EligibilityResponse,
    InterchangeAck,
    AuthorizationResponse,
    IntakeForm,
    RefillRequest,
    SchedulingRequest,
    IdentityLink,
    FaxClassification,
    HandoffItem,
    Draft,
    StaffDecision,
    WorkflowCommand,
    CommandResult,
    AuditEvent,
    FlowEvent,
    PilotComparison,
)
