"""The public surface other code and staff tools consume, pinned (as httpx pins its exports).

A name that appears or disappears here changes a contract: the Avro records on the topics,
the topic catalog, the work item staff tools read, or the command operators type. The
expected lists live in this file so that a deliberate change is a visible diff in review;
an accidental one fails. Field-level schema changes are guarded by the .avsc drift and
compatibility tests (tests/schemas).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys

from pydantic import BaseModel

from practiceflow.schemas import models, records
from practiceflow.streams import catalog

RECORD_TYPES = [
    "RawMessage",
    "DeadLetter",
    "Patient",
    "Coverage",
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "Immunization",
    "Order",
    "MedicationOrder",
    "Appointment",
    "Document",
    "Claim",
    "ClaimAdjudication",
    "ProviderAdjustment",
    "DenialLedgerEntry",
    "ClaimStatus",
    "EligibilityResponse",
    "InterchangeAck",
    "AuthorizationResponse",
    "IntakeForm",
    "RefillRequest",
    "SchedulingRequest",
    "IdentityLink",
    "FaxClassification",
    "HandoffItem",
    "Draft",
    "StaffDecision",
    "WorkflowCommand",
    "CommandResult",
    "AuditEvent",
    "FlowEvent",
    "PilotComparison",
]

# nested records (Avro named types inside the top-level records)
NESTED_TYPES = [
    "Address",
    "Adjustment",
    "Benefit",
    "Coding",
    "DecisionOption",
    "DocumentPage",
    "Evidence",
    "FaxExtractedValue",
    "FaxGuess",
    "Identifier",
    "ImmunizationObservation",
    "ProducedBy",
    "ServiceLine",
    "SourceRef",
]

# topic suffix -> (record type, kind)
TOPICS = {
    "raw.hl7v2": ("RawMessage", "raw"),
    "raw.fhir": ("RawMessage", "raw"),
    "raw.fax": ("RawMessage", "raw"),
    "raw.portal": ("RawMessage", "raw"),
    "raw.x12": ("RawMessage", "raw"),
    "retry.hl7v2": ("RawMessage", "retry"),
    "retry.fhir": ("RawMessage", "retry"),
    "retry.fax": ("RawMessage", "retry"),
    "retry.portal": ("RawMessage", "retry"),
    "retry.x12": ("RawMessage", "retry"),
    "norm.patient": ("Patient", "normalized"),
    "norm.coverage": ("Coverage", "normalized"),
    "norm.encounter": ("Encounter", "normalized"),
    "norm.observation": ("Observation", "normalized"),
    "norm.condition": ("Condition", "normalized"),
    "norm.allergy": ("AllergyIntolerance", "normalized"),
    "norm.immunization": ("Immunization", "normalized"),
    "norm.order": ("Order", "normalized"),
    "norm.medication_order": ("MedicationOrder", "normalized"),
    "norm.appointment": ("Appointment", "normalized"),
    "norm.document": ("Document", "normalized"),
    "norm.claim": ("Claim", "normalized"),
    "norm.claim_adjudication": ("ClaimAdjudication", "normalized"),
    "norm.provider_adjustment": ("ProviderAdjustment", "normalized"),
    "norm.claim_status": ("ClaimStatus", "normalized"),
    "norm.eligibility": ("EligibilityResponse", "normalized"),
    "norm.interchange_ack": ("InterchangeAck", "normalized"),
    "norm.intake_form": ("IntakeForm", "normalized"),
    "norm.refill_request": ("RefillRequest", "normalized"),
    "norm.scheduling_request": ("SchedulingRequest", "normalized"),
    "norm.identity": ("IdentityLink", "normalized"),
    "norm.fax_classification": ("FaxClassification", "normalized"),
    "norm.authorization_response": ("AuthorizationResponse", "normalized"),
    "handoff": ("HandoffItem", "handoff"),
    "drafts": ("Draft", "workflow"),
    "decisions": ("StaffDecision", "workflow"),
    "cmd.eligibility": ("WorkflowCommand", "command"),
    "cmd.llm": ("WorkflowCommand", "command"),
    "cmd.ehr_write": ("WorkflowCommand", "command"),
    "cmd.prior_auth": ("WorkflowCommand", "command"),
    "cmd.results": ("CommandResult", "command"),
    "audit.in": ("AuditEvent", "audit"),
    "audit": ("AuditEvent", "audit"),
    "dlq.hl7v2": ("DeadLetter", "dead_letter"),
    "dlq.fhir": ("DeadLetter", "dead_letter"),
    "dlq.fax": ("DeadLetter", "dead_letter"),
    "dlq.portal": ("DeadLetter", "dead_letter"),
    "dlq.x12": ("DeadLetter", "dead_letter"),
    "dlq.cmd": ("DeadLetter", "dead_letter"),
    "analytics.flow": ("FlowEvent", "analytics"),
    "pilot.comparisons": ("PilotComparison", "analytics"),
    "denials.ledger": ("DenialLedgerEntry", "analytics"),
}

# the work-item contract: what staff tools read from pf.handoff
HANDOFF_ITEM_FIELDS = [
    "practice_id",
    "item_id",
    "workflow",
    "queue",
    "priority",
    "title",
    "what_happened",
    "actions_taken",
    "decision_needed",
    "patient_id",
    "subject_type",
    "subject_id",
    "evidence",
    "created_at",
    "source",
    "corrected",
    "contract_version",
    "kind",
    "state",
    "revision",
    "due_at",
    "supersedes",
    "proposed_action",
    "draft_ids",
    "options",
    "produced_by",
    "assigned_to",
    "decision_id",
    "outcome",
    "updated_at",
]
EVIDENCE_FIELDS = [
    "label",
    "ref",
    "excerpt",
    "record_type",
    "record_key",
    "value",
    "unit",
    "reference_range",
    "flags",
    "observed_at",
    "assessment",
    "document_uri",
    "page",
    "span_start",
    "span_end",
]

CLI_COMMANDS = [
    "stack",
    "schemas",
    "run-file",
    "worker",
    "sink",
    "dlq",
    "day",
    "gateways",
    "fax",
    "queue",
    "ehr",
    "audit",
    "pilot",
    "rules",
    "eval",
    "llm",
]
DLQ_ACTIONS = ["list", "show", "redrive"]
LLM_ACTIONS = ["executor", "check", "serve-local"]


def test_record_types_are_the_published_ones():
    assert [m.__avro_name__ for m in models.ALL_RECORDS] == RECORD_TYPES


def test_models_module_exports_only_known_models():
    defined = sorted(
        name
        for name, obj in vars(models).items()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__.startswith(f"{records.__name__}.")
    )
    assert defined == sorted(["AvroRecord", *RECORD_TYPES, *NESTED_TYPES])
    # and every model the record modules define is re-exported by schemas/models.py
    in_records = sorted(
        name
        for info in pkgutil.iter_modules(records.__path__)
        for name, obj in vars(importlib.import_module(f"{records.__name__}.{info.name}")).items()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == f"{records.__name__}.{info.name}"
    )
    assert in_records == defined


def test_topic_catalog_is_the_published_one():
    assert {t.suffix: (t.record_type, t.kind.value) for t in catalog.CATALOG} == TOPICS


def test_work_item_contract():
    assert list(models.HandoffItem.model_fields) == HANDOFF_ITEM_FIELDS
    assert list(models.Evidence.model_fields) == EVIDENCE_FIELDS


def _subcommands(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", "from practiceflow.cli import main; main()", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    m = re.search(r"\{([a-z0-9,-]+)\}", out.stdout)
    assert m, out.stdout
    return m.group(1).split(",")


def test_cli_subcommands():
    assert _subcommands() == CLI_COMMANDS
    assert _subcommands("dlq") == DLQ_ACTIONS
    assert _subcommands("llm") == LLM_ACTIONS
