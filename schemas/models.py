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

Where the models live: one module per concern under ``schemas/records/`` (``common``: the
base class, codes, source references, raw messages and dead letters; ``clinical``; ``revenue``;
``portal``; ``fax``; ``workflow``: the work-item contract; ``commands``; ``audit``: audit and
analytics). This module re-exports every one of them and lists the topic records in
``ALL_RECORDS``: import the models from here.
"""

from __future__ import annotations

from practiceflow.schemas.records.audit import AuditEvent, FlowEvent, PilotComparison
from practiceflow.schemas.records.clinical import (
    Address,
    AllergyIntolerance,
    Appointment,
    Condition,
    Coverage,
    Document,
    DocumentPage,
    Encounter,
    IdentityLink,
    Immunization,
    ImmunizationObservation,
    MedicationOrder,
    Observation,
    Order,
    Patient,
)
from practiceflow.schemas.records.commands import CommandResult, WorkflowCommand
from practiceflow.schemas.records.common import AvroRecord, Coding, DeadLetter, Identifier, RawMessage, SourceRef
from practiceflow.schemas.records.fax import FaxClassification, FaxExtractedValue, FaxGuess
from practiceflow.schemas.records.portal import IntakeForm, RefillRequest, SchedulingRequest
from practiceflow.schemas.records.revenue import (
    Adjustment,
    AuthorizationResponse,
    Benefit,
    Claim,
    ClaimAdjudication,
    ClaimStatus,
    DenialLedgerEntry,
    EligibilityResponse,
    InterchangeAck,
    ProviderAdjustment,
    ServiceLine,
)
from practiceflow.schemas.records.workflow import (
    DecisionOption,
    Draft,
    Evidence,
    HandoffItem,
    ProducedBy,
    StaffDecision,
)

__all__ = [
    "AvroRecord",
    "Coding",
    "Identifier",
    "SourceRef",
    "RawMessage",
    "DeadLetter",
    "Address",
    "Patient",
    "Coverage",
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "ImmunizationObservation",
    "Immunization",
    "Order",
    "MedicationOrder",
    "Appointment",
    "DocumentPage",
    "Document",
    "IdentityLink",
    "Adjustment",
    "ServiceLine",
    "Claim",
    "ClaimAdjudication",
    "ProviderAdjustment",
    "DenialLedgerEntry",
    "ClaimStatus",
    "Benefit",
    "EligibilityResponse",
    "AuthorizationResponse",
    "InterchangeAck",
    "IntakeForm",
    "RefillRequest",
    "SchedulingRequest",
    "FaxGuess",
    "FaxExtractedValue",
    "FaxClassification",
    "Evidence",
    "DecisionOption",
    "ProducedBy",
    "HandoffItem",
    "Draft",
    "StaffDecision",
    "WorkflowCommand",
    "CommandResult",
    "AuditEvent",
    "FlowEvent",
    "PilotComparison",
    "ALL_RECORDS",
]

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
