"""What every record shares: the base class, codes, identifiers, the source reference; and the
two records of the pipeline itself (the raw input and the dead letter)."""

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
