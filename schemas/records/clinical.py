"""Clinical entities the normalizers read from HL7 v2, FHIR, fax and the portal (patients, coverage,
encounters, results, orders, documents), and the identity links that tie a patient's ids together."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from practiceflow.schemas.records.common import AvroRecord, Coding, Identifier, SourceRef


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
