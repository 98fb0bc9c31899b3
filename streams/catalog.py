"""Every Kafka topic practiceflow uses: name, key, value schema, partitions, retention.

Keys are ``<practice_id>/<entity...>`` strings (see ``processors.base.entity_key``).
Partitions are chosen from the practice id alone (:func:`partition_for`, murmur2 as
in Kafka's default partitioner), so one practice's records stay in order on one
partition while the full key still drives compaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from aiokafka.partitioner import murmur2  # the Java client's Utils.murmur2, ported

DAY_MS = 24 * 3600 * 1000

FEEDS: tuple[str, ...] = ("hl7v2", "fhir", "fax", "portal", "x12")


class Kind(str, Enum):  # noqa: UP042 - StrEnum would change str() and f-strings of members
    RAW = "raw"
    NORMALIZED = "normalized"
    HANDOFF = "handoff"
    AUDIT = "audit"
    DEAD_LETTER = "dead_letter"
    ANALYTICS = "analytics"
    RETRY = "retry"
    WORKFLOW = "workflow"
    COMMAND = "command"


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    kind: Kind
    record_type: str
    key: str
    doc: str
    compact: bool = False
    retention_ms: int = 30 * DAY_MS  # -1 = never deleted by time
    partitions: int | None = None  # None = the settings' default
    config: dict[str, str] = field(default_factory=dict)

    def name(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}"

    def topic_config(self) -> dict[str, str]:
        """Kafka topic config. A compacted topic without time retention (``retention_ms=-1``)
        is ``compact`` only: it is the system of record for its entities, and ``delete``
        would drop an entity untouched for longer than the retention."""
        if self.compact:
            policy = "compact" if self.retention_ms < 0 else "compact,delete"
        else:
            policy = "delete"
        cfg = {"cleanup.policy": policy, "retention.ms": str(self.retention_ms)}
        cfg.update(self.config)
        return cfg


def _raw(feed: str) -> TopicSpec:
    return TopicSpec(
        f"raw.{feed}",
        Kind.RAW,
        "RawMessage",
        "practice/message_id",
        f"Bytes exactly as the {feed} gateway accepted them.",
        retention_ms=14 * DAY_MS,
    )


def _retry(feed: str) -> TopicSpec:
    return TopicSpec(
        f"retry.{feed}",
        Kind.RETRY,
        "RawMessage",
        "practice/message_id",
        f"{feed} raw messages waiting to be tried again after a transient failure (retry.* headers).",
        retention_ms=14 * DAY_MS,
    )


def _dlq(feed: str) -> TopicSpec:
    return TopicSpec(
        f"dlq.{feed}",
        Kind.DEAD_LETTER,
        "DeadLetter",
        "practice/message_id",
        f"{feed} inputs that could not be normalized: original bytes + reason.",
        retention_ms=90 * DAY_MS,
    )


# Side effects workflows ask for, one topic each (processors/workflows/commands.py); an
# executor per kind (streams/commands/<kind>.py) performs each command id at most once.
# prior_auth: a person's confirmation of a faxed payer decision, executed by the prior-auth agent
COMMAND_KINDS: tuple[str, ...] = ("eligibility", "llm", "ehr_write", "prior_auth")


def _command(kind: str) -> TopicSpec:
    return TopicSpec(
        f"cmd.{kind}",
        Kind.COMMAND,
        "WorkflowCommand",
        "practice/command_id",
        f"{kind} commands from the workflows; the key is the idempotency key.",
        retention_ms=30 * DAY_MS,
    )


# record type -> normalized topic suffix
NORMALIZED: dict[str, str] = {
    "Patient": "norm.patient",
    "Coverage": "norm.coverage",
    "Encounter": "norm.encounter",
    "Observation": "norm.observation",
    "Condition": "norm.condition",
    "AllergyIntolerance": "norm.allergy",
    "Immunization": "norm.immunization",
    "Order": "norm.order",
    "MedicationOrder": "norm.medication_order",
    "Appointment": "norm.appointment",
    "Document": "norm.document",
    "Claim": "norm.claim",
    "ClaimAdjudication": "norm.claim_adjudication",
    "ProviderAdjustment": "norm.provider_adjustment",
    "ClaimStatus": "norm.claim_status",
    "EligibilityResponse": "norm.eligibility",
    "InterchangeAck": "norm.interchange_ack",
    "IntakeForm": "norm.intake_form",
    "RefillRequest": "norm.refill_request",
    "SchedulingRequest": "norm.scheduling_request",
    "IdentityLink": "norm.identity",
    "FaxClassification": "norm.fax_classification",
    "AuthorizationResponse": "norm.authorization_response",
}
# Patients, coverages and identity links are the system of record for who a practice's patients are:
# compacted (latest per key) and never deleted by age.
_COMPACTED = {"Patient", "Coverage", "IdentityLink"}

CATALOG: tuple[TopicSpec, ...] = (
    *(_raw(f) for f in FEEDS),
    *(
        TopicSpec(
            suffix,
            Kind.NORMALIZED,
            rt,
            "practice/patient/entity",
            f"Normalized {rt} records from every feed.",
            compact=rt in _COMPACTED,
            retention_ms=(-1 if rt in _COMPACTED else 30 * DAY_MS),
        )
        for rt, suffix in NORMALIZED.items()
    ),
    TopicSpec(
        "handoff",
        Kind.HANDOFF,
        "HandoffItem",
        "practice/item_id",
        "Work items for staff tools; a replayed item carries the same item_id.",
        compact=True,
        retention_ms=90 * DAY_MS,
    ),
    TopicSpec(
        "drafts",
        Kind.WORKFLOW,
        "Draft",
        "practice/draft_id",
        "Drafts awaiting a person's sign-off (FHIR resources, X12, letters); latest per draft id.",
        compact=True,
        retention_ms=90 * DAY_MS,
    ),
    TopicSpec(
        "decisions",
        Kind.WORKFLOW,
        "StaffDecision",
        "practice/item_id",
        "Staff decisions on work items (CLI, EHR Task status, staff tools); the workflows record the outcome.",
        retention_ms=400 * DAY_MS,
    ),
    *(_command(k) for k in COMMAND_KINDS),
    TopicSpec(
        "cmd.results",
        Kind.COMMAND,
        "CommandResult",
        "practice/command_id",
        "Results of commands: the answer (a 271, a completion, a write receipt) or why there is none.",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "audit.in",
        Kind.AUDIT,
        "AuditEvent",
        "practice",
        "Audit events before chaining; the audit agent hashes them in order per practice.",
        retention_ms=7 * DAY_MS,
    ),
    TopicSpec(
        "audit",
        Kind.AUDIT,
        "AuditEvent",
        "practice",
        "Every action, hash-chained per practice. Never deleted by retention.",
        retention_ms=-1,
        partitions=None,
    ),
    *(_dlq(f) for f in FEEDS),
    TopicSpec(
        "dlq.cmd",
        Kind.DEAD_LETTER,
        "DeadLetter",
        "practice/message_id",
        "Commands (cmd.<kind>) whose value and key were both unreadable, so no result could be addressed: "
        "original bytes + reason.",
        retention_ms=90 * DAY_MS,
    ),
    *(_retry(f) for f in FEEDS),
    TopicSpec(
        "analytics.flow",
        Kind.ANALYTICS,
        "FlowEvent",
        "practice/message_id",
        "One event per message per stage, for the ClickHouse analytics tables.",
        retention_ms=7 * DAY_MS,
    ),
    TopicSpec(
        "pilot.comparisons",
        Kind.ANALYTICS,
        "PilotComparison",
        "practice/item_id",
        "Pilot (shadow) mode: each work item's proposal against what staff did, one verdict per item.",
        compact=True,
        retention_ms=-1,
    ),
    TopicSpec(
        "denials.ledger",
        Kind.ANALYTICS,
        "DenialLedgerEntry",
        "practice/entry_id",
        "Denial money per 835 claim and category (denied, recoverable, recovered, written off); latest per entry.",
        compact=True,
        retention_ms=-1,
    ),
)

BY_SUFFIX: dict[str, TopicSpec] = {t.suffix: t for t in CATALOG}

#: The kinds of topic the worker's agents consume and commit themselves (streams/offsets.py):
#: raw and retry (the normalizers), normalized (the context agent and the workflows), handoff
#: (the work-items table), workflow and command topics. Faust must not ack-commit them.
AGENT_INPUT_KINDS: frozenset[Kind] = frozenset(
    {Kind.RAW, Kind.RETRY, Kind.NORMALIZED, Kind.HANDOFF, Kind.WORKFLOW, Kind.COMMAND}
)
#: The one audit topic the worker consumes (the audit chain agent); ``audit`` itself is only written.
AUDIT_INPUT = "audit.in"


def is_agent_input(spec: TopicSpec) -> bool:
    """Whether one of the worker's agents consumes ``spec`` and commits it (by kind, not by the
    worker's subscriptions: a normalized topic no agent reads yet counts too)."""
    return spec.kind in AGENT_INPUT_KINDS or spec.suffix == AUDIT_INPUT


def raw_topic(feed: str) -> TopicSpec:
    return BY_SUFFIX[f"raw.{feed}"]


def dlq_topic(feed: str) -> TopicSpec:
    return BY_SUFFIX[f"dlq.{feed}"]


def normalized_topic(record_type: str) -> TopicSpec:
    return BY_SUFFIX[NORMALIZED[record_type]]


def partition_for(practice_id: str, partitions: int) -> int:
    """The partition every record of one practice goes to (Kafka's murmur2 rule)."""
    return (murmur2(practice_id.encode()) & 0x7FFFFFFF) % partitions
