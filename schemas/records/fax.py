"""The fax classifier's verdict on a faxed document: document type guesses and extracted values."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from practiceflow.schemas.records.common import AvroRecord, SourceRef


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
